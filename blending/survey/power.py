"""How many participants the study needs: its power curve, measured in the controlled world.

``python -m blending.survey.power --out blending/survey/results/power.json`` reruns the whole study
(:mod:`blending.survey`) many times with simulated participants on blends of the ``toy`` experiment,
where the attribute readers know what each image shows, and counts how often the report finds what
the readers find.

The study
---------
A sweep of the ``toy`` experiment (3 pairs of the toy world, 2 seeds, the four methods: 36 images,
drawn by the embedded model; ``--run DIR`` takes an existing sweep instead) becomes a study with
:func:`~blending.survey.design.make_study`'s defaults, written beside the results
(``results/toy-study/``: ``design.json`` and its images) so that the results can be rerun, and checked,
without a sweep. A study folder that already holds a design is used as it is.

The truth is the readers' ranking (:func:`~blending.survey.simulate.readers_ranking`): on each blend
trial, the option whose read attributes cover most of both prompts; a method's share is its share
of the trials. Its *top method* is the method (or the methods, tied) with the largest share.

The reruns
----------
For each number of participants ``N`` (:data:`DEFAULT_PARTICIPANTS`) and each repetition seed ``r``
(``0 .. R - 1``), ``N`` simulated participants take the study through the real server
(:func:`~blending.survey.server.create_app`, in process with Starlette's ``TestClient``, on a fresh
answers database) with :func:`~blending.survey.simulate.simulate`:

- they choose as the readers do (:func:`~blending.survey.simulate.readers_chooser`'s rule, ties at
  random from ``random.Random(r)``), except that
- each answer is, with probability ``random_rate`` (:data:`RANDOM_RATE`, 0.3), a uniformly random
  option (a lapse), and
- a share ``careless`` (:data:`CARELESS`, 0.1) of the participants answer everything at random,
  attention checks included (someone clicking through without looking);
- participant ``i`` draws from ``numpy.random.default_rng([r, i])`` and the readers' ties come
  from one ``random.Random(r)`` in order of arrival, so participant ``i`` of repetition ``r`` gives
  the same answers at every ``N`` (common random numbers: the curve compares ``N``, not luck). Each
  repetition therefore runs its largest ``N`` through the server once and reports on its first
  ``N`` participants for each ``N``: the answers a run of ``N`` alone gives, which the test checks
  by running the smallest ``N`` alone.

The server runs with ``shuffle=False`` (the design's order of options, which rotates the methods
across trials): its per-participant shuffle is keyed by a random participant id, so with it the
option a random lapse lands on would change from run to run, and the results could not be checked.
Simulated participants do not look at positions, so the order changes nothing else. For the same
reason the participants are renamed ``s000``, ``s001``, ... in order of arrival before the report
(the bootstrap sorts participants by id).

The answers are analysed by :func:`~blending.survey.report.analyse` (its exclusions, win shares and
two-way cluster bootstrap, ``resamples`` replicates drawn from seed ``r``), and each rerun records:

- ``top_match``: the report's top method (the largest win share, alone: a tie is no match) is the
  readers' top method (one of them, when the readers tie);
- ``spearman``: Spearman's correlation between the participants' win shares and the readers' shares
  (the report's own comparison with the truth);
- ``excludes_runner_up``: the top method's 95% interval lies above the runner-up's win share (the
  report would call the top method ahead); ``intervals_disjoint``: above the runner-up's whole
  interval (stricter);
- ``right_and_sure``: both ``top_match`` and ``excludes_runner_up``.

Per ``N``: the rate of each boolean over the reruns with its 95% Wilson interval, and the median
and quartiles of the correlations. ``needed``: the fewest participants of those run from which on
(at that count and every larger one) a rate reaches 80%.

Speed: the readers read each trial's images once (:func:`read_picks`; :func:`cached_readers_chooser`
makes the same choices as :func:`~blending.survey.simulate.readers_chooser`), the answers databases
live in memory where the system has a memory file system (``/dev/shm``), and each repetition's
participants go through the server once, so the default grid (5 counts x 20 repetitions: 1,600
simulated participants, about 80,000 requests, and 100 reports) takes minutes on a CPU.

``power.json`` (:data:`FORMAT`) holds the date, the machine, the settings, the study's provenance and
digest, the truth and, per ``N``, the rates and every rerun's outcomes; ``power.md`` beside it
the table. ``tests/test_survey_power.py`` reruns the smallest ``N`` for two repetitions and checks
that they give the committed outcomes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

__all__ = [
    "CARELESS",
    "DEFAULT_PARTICIPANTS",
    "DEFAULT_REPETITIONS",
    "DEFAULT_RESAMPLES",
    "FORMAT",
    "OUTCOMES",
    "RANDOM_RATE",
    "RESULTS_PATH",
    "STUDY_PATH",
    "cached_readers_chooser",
    "main",
    "markdown",
    "measure",
    "needed",
    "outcomes",
    "read_picks",
    "readers_truth",
    "rerun",
    "summarise",
    "wilson",
]

logger = logging.getLogger(__name__)

#: The value of power.json's ``format``.
FORMAT = "blending-survey-power/1"
#: The committed results and the study they were measured on.
RESULTS_PATH = Path(__file__).parent / "results" / "power.json"
STUDY_PATH = RESULTS_PATH.parent / "toy-study"
#: Participants per rerun, repetitions per count, bootstrap replicates per report.
DEFAULT_PARTICIPANTS = (5, 10, 20, 40, 80)
DEFAULT_REPETITIONS = 20
DEFAULT_RESAMPLES = 200
#: The simulated participants' noise: the share of answers at random, the share of careless participants.
RANDOM_RATE = 0.3
CARELESS = 0.1
#: The boolean outcomes of a rerun, whose rates the curve shows.
OUTCOMES = ("top_match", "excludes_runner_up", "intervals_disjoint", "right_and_sure")
#: The rate the key numbers ask for.
TARGET = 0.8
_Z = 1.959963984540054  # the normal quantile of a 95% interval


def wilson(successes: int, trials: int, z: float = _Z) -> tuple[float, float]:
    """The Wilson score interval of a binomial rate (95% by default); (nan, nan) for no trials."""
    if trials == 0:
        return math.nan, math.nan
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


# --- the readers, read once ------------------------------------------------------------------------


def read_picks(study_dir: str | os.PathLike, net=None) -> dict[str, dict]:
    """The readers' picks on every trial of a study, read once: by option id, the trial's id, its
    prompts and the option ids the readers' rule ranks best (several when they tie). ``net``: the
    readers (:func:`blending.toy.readers.load_readers`, loaded if not given)."""
    from PIL import Image

    from ..toy.readers import load_readers
    from .simulate import readers_pick

    study = Path(study_dir)
    design = json.loads((study / "design.json").read_text())
    net = load_readers() if net is None else net
    picks = {}
    for trial in design["trials"]:
        images = []
        for option in trial["options"]:
            with Image.open(study / "images" / f"{option['image']}.png") as image:
                images.append(image.convert("RGB"))
        best = readers_pick(trial["prompt_1"], trial["prompt_2"], images, net)
        entry = {
            "trial": trial["id"],
            "prompts": (trial["prompt_1"], trial["prompt_2"]),
            "best": frozenset(trial["options"][i]["id"] for i in best),
        }
        for option in trial["options"]:
            picks[option["id"]] = entry
    return picks


def cached_readers_chooser(picks: Mapping[str, Mapping], seed: int = 0):
    """:func:`~blending.survey.simulate.readers_chooser`'s choices, from the readers' picks read once
    (``picks``: :func:`read_picks`'s): the best option, remaining ties broken by ``random.Random(seed)``
    exactly as that chooser breaks them (by the options' order, as shown)."""
    rng = random.Random(seed)

    def choose(prompt_1: str, prompt_2: str, images: Mapping[str, object]) -> str:
        ids = list(images)
        entry = picks.get(ids[0])
        if entry is None or tuple(entry["prompts"]) != (prompt_1, prompt_2):
            raise ValueError(f"options {ids} with prompts {prompt_1!r} and {prompt_2!r} are not a trial of this study")
        best = [i for i, option in enumerate(ids) if option in entry["best"]]
        return ids[best[0]] if len(best) == 1 else ids[rng.choice(best)]

    return choose


# --- one rerun -------------------------------------------------------------------------------------


def _renamed(rows: list[dict]) -> list[dict]:
    """The answers with their participants renamed s000, s001, ... in order of arrival."""
    names: dict[str, str] = {}
    for row in rows:
        names.setdefault(row["participant"], f"s{len(names):03d}")
    return [{**row, "participant": names[row["participant"]]} for row in rows]


def _answers(study: Path, scratch: Path, participants: int, choose, seed: int, random_rate: float, careless: float):
    """``participants`` simulated participants through the study's server, in process, on a fresh
    answers database in ``scratch``; their answers, as the report reads them."""
    from starlette.testclient import TestClient

    from .report import answers_from_sqlite
    from .server import create_app
    from .simulate import simulate

    scratch.mkdir(parents=True)
    shutil.copyfile(study / "design.json", scratch / "design.json")
    try:
        (scratch / "images").symlink_to((study / "images").resolve(), target_is_directory=True)
    except OSError:
        shutil.copytree(study / "images", scratch / "images")
    app = create_app(scratch, admin_token=secrets.token_urlsafe(24), secret_key=secrets.token_hex(16), shuffle=False)
    with TestClient(app) as client:
        simulate(
            str(client.base_url),
            participants,
            choose=choose,
            random_rate=random_rate,
            careless=careless,
            seed=seed,
            client=client,
        )
    return _renamed(answers_from_sqlite(scratch))


def outcomes(analysis, truth: Mapping) -> dict:
    """What one rerun found, against the readers' ``truth``: see the module's docstring."""
    shares = analysis.win_shares["overall"]
    readers = {m: float(truth["shares"][m]) for m in analysis.methods}
    readers_top = {m for m, share in readers.items() if share == max(readers.values())}
    ranking = analysis.ranking
    top, runner_up = shares[ranking[0]], shares[ranking[1]]
    known = analysis.answers["kept_blend"] > 0
    alone = known and top["share"] > runner_up["share"]
    top_match = bool(alone and ranking[0] in readers_top)
    excludes = bool(known and top["low"] > runner_up["share"])
    spearman = analysis.truth["spearman"] if analysis.truth else math.nan
    return {
        "participants_excluded": analysis.participants["excluded"],
        "ranking": ranking,
        "top_match": top_match,
        "spearman": None if spearman is None or math.isnan(spearman) else round(float(spearman), 6),
        "excludes_runner_up": excludes,
        "intervals_disjoint": bool(known and top["low"] > runner_up["high"]),
        "right_and_sure": top_match and excludes,
        "top": [_rounded(top[k]) for k in ("share", "low", "high")],
        "runner_up": [_rounded(runner_up[k]) for k in ("share", "low", "high")],
    }


def _rounded(value) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def _scratch_root() -> str | None:
    """Where the answers databases go: a memory file system where there is one (the server commits
    every answer with a full sync, which a disk makes slow), else the system's temporary folder."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def rerun(
    study_dir: str | os.PathLike,
    participants: int | Sequence[int],
    seeds: Iterable[int],
    *,
    truth: Mapping,
    picks: Mapping,
    random_rate: float = RANDOM_RATE,
    careless: float = CARELESS,
    resamples: int = DEFAULT_RESAMPLES,
    progress=None,
) -> dict[int, list[dict]]:
    """The study rerun once per seed in ``seeds`` for each count of ``participants``: by count, one
    :func:`outcomes` dict per seed (with its ``seed``).

    Each seed runs its largest count through the server once and reports on its first ``n``
    participants for each count ``n``: the answers a run of ``n`` alone gives, since participant
    ``i`` draws from ``default_rng([seed, i])`` and the readers' ties from one ``random.Random(seed)``
    in order of arrival. ``picks``: the readers' picks (:func:`read_picks`); ``truth``: their
    ranking with its ``top``; ``progress``: a tqdm bar, advanced once per report."""
    from .report import analyse

    counts = sorted({participants} if isinstance(participants, int) else set(participants))
    study = Path(study_dir)
    design = json.loads((study / "design.json").read_text())
    runs: dict[int, list[dict]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory(prefix="blending-power-", dir=_scratch_root()) as folder:
        for seed in seeds:
            rows = _answers(
                study,
                Path(folder) / f"seed-{seed}",
                counts[-1],
                cached_readers_chooser(picks, seed),
                seed,
                random_rate,
                careless,
            )
            for n in counts:
                first = [row for row in rows if int(row["participant"][1:]) < n]
                analysis = analyse(first, design, resamples=resamples, seed=seed, truth=truth)
                runs[n].append({"seed": seed, **outcomes(analysis, truth)})
                if progress is not None:
                    progress.update(1)
    return runs


# --- the curve -------------------------------------------------------------------------------------


def summarise(participants: int, runs: Sequence[Mapping]) -> dict:
    """The rates of a count's reruns, with 95% Wilson intervals, and its correlations' quartiles."""
    summary: dict = {"participants": participants, "reruns": len(runs)}
    for name in OUTCOMES:
        count = sum(bool(run[name]) for run in runs)
        low, high = wilson(count, len(runs))
        summary[name] = {"count": count, "rate": count / len(runs) if runs else None, "low": low, "high": high}
    rho = np.array([run["spearman"] for run in runs if run["spearman"] is not None], dtype=float)
    summary["spearman"] = {
        "reruns": len(rho),
        "median": float(np.median(rho)) if len(rho) else None,
        "q25": float(np.quantile(rho, 0.25)) if len(rho) else None,
        "q75": float(np.quantile(rho, 0.75)) if len(rho) else None,
        "mean": float(rho.mean()) if len(rho) else None,
    }
    summary["participants_excluded"] = {"mean": float(np.mean([run["participants_excluded"] for run in runs]))}
    return summary


def needed(curve: Sequence[Mapping], outcome: str, rate: float = TARGET, *, bound: str = "rate") -> int | None:
    """The fewest participants of the curve whose ``outcome`` reaches ``rate`` (``bound``: ``"rate"``,
    the measured rate, or ``"low"``, its Wilson interval's lower end), at that count and every larger
    one; None where none does."""
    found = None
    for point in sorted(curve, key=lambda p: -p["participants"]):
        if point[outcome][bound] is not None and point[outcome][bound] >= rate:
            found = point["participants"]
        else:
            break
    return found


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def readers_truth(study_dir: str | os.PathLike, net=None) -> dict:
    """The readers' ranking of a study (:func:`~blending.survey.simulate.readers_ranking`) with its
    ``top``: the methods with the largest share (several when they tie)."""
    from .simulate import readers_ranking

    truth = readers_ranking(study_dir, net=net)
    top = max(truth["shares"].values())
    return {**truth, "top": [m for m in truth["ranking"] if truth["shares"][m] == top]}


def measure(
    study_dir: str | os.PathLike,
    *,
    participants: Sequence[int] = DEFAULT_PARTICIPANTS,
    repetitions: int = DEFAULT_REPETITIONS,
    first_seed: int = 0,
    random_rate: float = RANDOM_RATE,
    careless: float = CARELESS,
    resamples: int = DEFAULT_RESAMPLES,
    net=None,
    progress: bool = True,
) -> dict:
    """The power curve of the study at ``study_dir``: the content of power.json but for where and
    when it ran (see the module's docstring)."""
    from tqdm.auto import tqdm

    from ..toy.readers import load_readers

    study = Path(study_dir)
    design = json.loads((study / "design.json").read_text())
    net = load_readers() if net is None else net
    truth = readers_truth(study, net)
    picks = read_picks(study, net)
    seeds = list(range(first_seed, first_seed + repetitions))
    with tqdm(total=len(participants) * repetitions, desc="reports", disable=not progress) as bar:
        runs = rerun(
            study,
            participants,
            seeds,
            truth=truth,
            picks=picks,
            random_rate=random_rate,
            careless=careless,
            resamples=resamples,
            progress=bar,
        )
    curve = [{**summarise(n, runs[n]), "runs": runs[n]} for n in sorted(runs)]
    blend = [t for t in design["trials"] if t["kind"] == "blend"]
    return {
        "format": FORMAT,
        "study": {
            "design_sha256": _sha256(study / "design.json"),
            "source": design["source"],
            "methods": design["settings"]["methods"],
            "pairs": len({(t["category"], t["pair"]) for t in blend}),
            "blend_trials": len(blend),
            "attention_trials": len(design["trials"]) - len(blend),
            "blocks": len(design["blocks"]),
            "trials_per_participant": len(design["blocks"][0]),
            "images": len({o["image"] for t in design["trials"] for o in t["options"]}),
        },
        "truth": {k: truth[k] for k in ("trials", "shares", "ranking", "top", "rule")},
        "settings": {
            "participants": list(participants),
            "repetitions": repetitions,
            "seeds": seeds,
            "random_rate": random_rate,
            "careless": careless,
            "resamples": resamples,
            "level": 0.95,
            "shuffle": False,
            "chooser": "the attribute readers' rule (readers_chooser), ties at random from random.Random(seed)",
            "participant_rng": "numpy.random.default_rng([seed, i]) for participant i",
            "outcomes": {
                "top_match": "the report's top method (largest win share, not tied) is the readers' top method",
                "spearman": "Spearman's correlation of the participants' win shares with the readers' shares",
                "excludes_runner_up": "the top method's 95% interval lies above the runner-up's win share",
                "intervals_disjoint": "the top method's 95% interval lies above the runner-up's whole interval",
                "right_and_sure": "top_match and excludes_runner_up",
            },
        },
        "curve": curve,
        "needed": {
            f"{outcome}_{round(100 * TARGET)}": needed(curve, outcome)
            for outcome in ("top_match", "excludes_runner_up", "right_and_sure")
        }
        | {"top_match_wilson_low_80": needed(curve, "top_match", bound="low")},
    }


# --- writing ---------------------------------------------------------------------------------------


def _percent(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.0f}%"


def markdown(results: Mapping) -> str:
    """power.md: the curve as a table, with what it measured."""
    settings, study, truth = results["settings"], results["study"], results["truth"]
    readers = ", ".join(f"{m} {truth['shares'][m]:.2f}" for m in truth["ranking"])
    lines = [
        "# The simulated study's power in the controlled world",
        "",
        f"Simulated participants, not people: {settings['repetitions']} reruns of the study per number of "
        f"participants, on a study of {study['blend_trials']} blend trials ({study['pairs']} pairs of the "
        f"`{study['source'].get('experiment')}` experiment, drawn by the `{study['source'].get('model')}` model) and "
        f"{study['attention_trials']} attention checks. The participants choose as the attribute readers do, "
        f"except for {_percent(settings['random_rate'])} of answers at random and {_percent(settings['careless'])} "
        f"of participants answering everything at random; each report's bootstrap has {settings['resamples']} "
        f"replicates. The readers' ranking (their shares of the blend trials): {readers}.",
        "",
        "| participants | top method as the readers' | its interval excludes the runner-up | both "
        "| Spearman, median [quartiles] | excluded per rerun |",
        "| ---: | --- | --- | --- | --- | ---: |",
    ]
    for point in results["curve"]:
        cells = []
        for name in ("top_match", "excludes_runner_up", "right_and_sure"):
            entry = point[name]
            cells.append(
                f"{_percent(entry['rate'])} [{_percent(entry['low'])}, {_percent(entry['high'])}] "
                f"({entry['count']}/{point['reruns']})"
            )
        rho = point["spearman"]
        rho_cell = "–" if rho["median"] is None else f"{rho['median']:.2f} [{rho['q25']:.2f}, {rho['q75']:.2f}]"
        lines.append(
            f"| {point['participants']} | {' | '.join(cells)} | {rho_cell} | "
            f"{point['participants_excluded']['mean']:.1f} |"
        )
    found = results["needed"].get("top_match_80")
    largest = max(settings["participants"])
    lines += [
        "",
        "Rates with 95% Wilson intervals. Participants needed for the top method to match the readers' in 80% of "
        "reruns: " + (f"{found}." if found is not None else f"more than {largest}."),
        "",
        f"Made on {results.get('created', '?')} on {results.get('machine', {}).get('platform', '?')} in "
        f"{results.get('seconds', '?')} s by `python -m blending.survey.power`.",
    ]
    return "\n".join(lines) + "\n"


def _toy_sweep(folder: Path, device: str | None) -> Path:
    from ..experiments.runner import run_sweep
    from ..experiments.schema import load_experiment

    run = folder / "toy"
    run_sweep(load_experiment("toy"), run, device=device, progress=True)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blending.survey.power", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS_PATH, help=f"the JSON file (default: {RESULTS_PATH})")
    parser.add_argument(
        "--study",
        type=Path,
        default=None,
        help="the study folder: used as it is if it holds a design.json, else made there (default: toy-study/ beside --out)",
    )
    parser.add_argument(
        "--run", type=Path, help="a sweep of the toy experiment (default: a new one, in a temporary folder)"
    )
    parser.add_argument(
        "--participants", type=int, nargs="+", default=list(DEFAULT_PARTICIPANTS), help="the counts to run"
    )
    parser.add_argument("--repetitions", type=int, default=DEFAULT_REPETITIONS, help="reruns per count, seeds 0..R-1")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES, help="each report's bootstrap replicates")
    parser.add_argument("--random-rate", type=float, default=RANDOM_RATE, help="share of answers at random")
    parser.add_argument("--careless", type=float, default=CARELESS, help="share of participants answering at random")
    parser.add_argument("--device", help="the sweep's device (default: the best available)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("httpx", "httpx2"):  # one line per simulated request otherwise
        logging.getLogger(name).setLevel(logging.WARNING)
    if any(n < 1 for n in args.participants) or args.repetitions < 1 or args.resamples < 1:
        parser.error("--participants, --repetitions and --resamples must be at least 1")
    participants = sorted(set(args.participants))

    from ..companion import numerics

    numerics.pin()  # the readers (and a sweep) on the pinned numeric paths, as the tests read them
    started = time.perf_counter()
    study = args.study if args.study is not None else args.out.parent / "toy-study"
    if not (study / "design.json").is_file():
        from .design import make_study

        with tempfile.TemporaryDirectory() as scratch:
            run = args.run if args.run is not None else _toy_sweep(Path(scratch), args.device)
            make_study(run, study)
    elif args.run is not None:
        logger.warning("--run %s left unused: %s already holds a study (remove it to make one afresh)", args.run, study)
    else:
        logger.info("using the study in %s", study)
    results = measure(
        study,
        participants=participants,
        repetitions=args.repetitions,
        random_rate=args.random_rate,
        careless=args.careless,
        resamples=args.resamples,
    )
    from ..settings import library_versions

    results = {
        "format": results["format"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor() or None,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numeric_path": numerics.numeric_path(),
        },
        "versions": library_versions(),
        "seconds": round(time.perf_counter() - started),
        "command": "python -m blending.survey.power " + " ".join(sys.argv[1:] if argv is None else argv),
        "study_folder": os.path.relpath(study, args.out.parent),
        **{k: v for k, v in results.items() if k != "format"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, allow_nan=False) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    logger.info("wrote %s and %s in %d s", args.out, args.out.with_suffix(".md"), results["seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
