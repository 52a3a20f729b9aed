"""Simulated participants, through the server's HTTP API only: a rehearsal of the study.

:func:`simulate` runs participants one after another as a browser would, each with a fresh
cookie jar: ``GET /`` (the consent page; its form's hidden ``csrf_token``), ``POST /start``
with that token, then ``GET /api/trial`` and ``POST /api/answer`` (JSON ``{"trial", "choice",
"ms"}``, header ``X-CSRF-Token`` from the trial's ``csrf``) until the server answers ``{"done":
true, "code"}``. Each trial's images are downloaded from their URLs and handed, as PIL images,
to a ``choose(prompt_1, prompt_2, images)`` function, which returns the chosen option id.

Noise, so that the report has something to exclude and to be uncertain about:

- ``random_rate``: each answer is, with this probability, a uniformly random option instead of
  ``choose``'s (a lapse);
- ``careless``: this share of the participants answers every trial, attention checks included,
  at random.

The response time sent as ``ms`` is drawn, not measured: log-normal around 4 s.

Choosers:

- :func:`readers_chooser`, for toy-world studies: reads each option's shape, colour and size
  with the controlled world's attribute readers (:mod:`blending.toy.readers`) and picks the
  option that takes most from both prompts: for each prompt, the share of the attributes the
  prompt names that the reader reads in the image; the option with the largest smaller share
  wins, ties broken by the larger sum of the two shares, then at random. On an attention trial
  (both prompts the same) that is the plain image of the prompt.
- :func:`random_chooser`: uniformly at random.

:func:`rehearse` runs a study folder's server in process on a copy of the study, so that
``blending survey simulate STUDY_DIR`` rehearses the whole study (answers, then the report, with
the readers' ranking to compare when the chooser is the readers') without a network or touching
the study's own answers.

:func:`readers_ranking` applies the readers' rule to every blend trial of a study folder and
ranks the methods by how often their image is the readers' pick: the truth a toy-world study's
report (:func:`blending.survey.report.report`, ``truth=``) can be checked against.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

__all__ = [
    "Chooser",
    "SimulatedParticipant",
    "add_arguments",
    "csrf_token",
    "main",
    "random_chooser",
    "readers_chooser",
    "readers_pick",
    "readers_ranking",
    "rehearse",
    "run",
    "simulate",
]

#: ``choose(prompt_1, prompt_2, {option id: PIL image}) -> option id``
Chooser = Callable[[str, str, Mapping[str, object]], str]
#: A participant who keeps getting trials without the study ending is a broken server.
MAX_TRIALS = 10_000
_MEDIAN_MS = 4000.0


@dataclass
class SimulatedParticipant:
    """One simulated participant: their completion code and their answers."""

    index: int
    careless: bool
    code: str | None = None
    answers: list[dict] = field(default_factory=list)


class _CsrfFinder(HTMLParser):
    def __init__(self):
        super().__init__()
        self.token: str | None = None

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "input" and values.get("name") == "csrf_token" and self.token is None:
            self.token = values.get("value") or ""

    handle_startendtag = handle_starttag


def csrf_token(html: str) -> str:
    """The value of the page's ``<input name="csrf_token">``."""
    finder = _CsrfFinder()
    finder.feed(html)
    if finder.token is None:
        raise ValueError("the start page has no csrf_token input")
    return finder.token


def random_chooser(seed: int = 0) -> Chooser:
    """Pick uniformly at random."""
    rng = random.Random(seed)
    return lambda prompt_1, prompt_2, images: rng.choice(sorted(images))


def _image(content: bytes):
    from PIL import Image

    with Image.open(io.BytesIO(content)) as image:
        return image.convert("RGB")


def _participant(
    client, index: int, choose: Chooser, random_rate: float, careless: bool, rng: np.random.Generator
) -> SimulatedParticipant:
    participant = SimulatedParticipant(index, careless)
    page = client.get("/")
    page.raise_for_status()
    client.post("/start", data={"csrf_token": csrf_token(page.text)}).raise_for_status()
    last = None
    for _ in range(MAX_TRIALS):
        response = client.get("/api/trial")
        response.raise_for_status()
        trial = response.json()
        if trial.get("done"):
            participant.code = trial.get("code")
            return participant
        if trial["trial"] == last:
            raise RuntimeError(f"participant {index}: the server gave trial {last} again after it was answered")
        options = [o["id"] for o in trial["options"]]
        images = {}
        for option in trial["options"]:  # as a browser would, whatever the participant does with them
            image = client.get(option["image"])
            image.raise_for_status()
            images[option["id"]] = _image(image.content)
        at_random = careless or rng.random() < random_rate
        if at_random:
            choice = options[int(rng.integers(len(options)))]
        else:
            choice = choose(trial["prompt_1"], trial["prompt_2"], images)
            if choice not in images:
                raise ValueError(f"choose returned {choice!r}, not one of the options {options}")
        ms = max(300, round(float(rng.lognormal(math.log(_MEDIAN_MS), 0.5))))
        answer = client.post(
            "/api/answer",
            json={"trial": trial["trial"], "choice": choice, "ms": ms},
            headers={"X-CSRF-Token": trial["csrf"]},
        )
        answer.raise_for_status()
        participant.answers.append({"trial": trial["trial"], "choice": choice, "ms": ms, "random": at_random})
        last = trial["trial"]
    raise RuntimeError(f"participant {index}: still not done after {MAX_TRIALS} trials")


def simulate(
    base_url: str,
    participants: int,
    *,
    choose: Chooser,
    random_rate: float = 0.1,
    careless: float = 0.0,
    seed: int = 0,
    transport=None,
    client=None,
    timeout: float = 60.0,
) -> list[SimulatedParticipant]:
    """Run ``participants`` simulated participants against the server at ``base_url``.

    ``choose`` decides each answer; with probability ``random_rate`` an answer is random instead,
    and a share ``careless`` of the participants answers everything at random. Participant ``i``
    draws from ``numpy.random.default_rng([seed, i])``. Returns one
    :class:`SimulatedParticipant` per participant, with the completion code the server gave.

    In place of the network: ``transport`` (an ``httpx`` transport, e.g. ``httpx.MockTransport``),
    or ``client``, an ``httpx.Client`` to use (e.g. Starlette's ``TestClient`` of
    :func:`blending.survey.server.create_app`; its own base URL counts), whose cookies are cleared
    before each participant, so that each is a new browser.
    """
    import httpx

    if not 0 <= random_rate <= 1 or not 0 <= careless <= 1:
        raise ValueError("random_rate and careless must be in [0, 1]")
    done = []
    for index in range(participants):
        rng = np.random.default_rng([seed, index])
        is_careless = bool(rng.random() < careless)
        if client is not None:
            client.cookies.clear()
            done.append(_participant(client, index, choose, random_rate, is_careless, rng))
            continue
        with httpx.Client(base_url=base_url, transport=transport, follow_redirects=True, timeout=timeout) as own:
            done.append(_participant(own, index, choose, random_rate, is_careless, rng))
    return done


# --- the attribute readers' rule -------------------------------------------------------------------


def _named(prompt: str) -> dict[str, str]:
    """The attributes a toy-world prompt names ("a large red circle"; partial prompts too)."""
    from ..toy.world import COLOURS, SHAPES, SIZES

    vocabulary = {"shape": SHAPES, "colour": COLOURS, "size": SIZES}
    words = prompt.lower().split()
    named = {a: next((w for w in words if w in values), None) for a, values in vocabulary.items()}
    named = {a: v for a, v in named.items() if v is not None}
    if not named:
        raise ValueError(f"prompt {prompt!r} names no shape, colour or size of the toy world")
    return named


def _score(reading, named_1: Mapping[str, str], named_2: Mapping[str, str]) -> tuple[float, float]:
    """(min, sum) of the shares of each prompt's named attributes that ``reading`` shows."""
    share_1 = sum(getattr(reading, a) == v for a, v in named_1.items()) / len(named_1)
    share_2 = sum(getattr(reading, a) == v for a, v in named_2.items()) / len(named_2)
    return min(share_1, share_2), share_1 + share_2


def _array(image) -> np.ndarray:
    """A 64x64x3 float array in [0, 1] of a PIL image or an array."""
    from PIL import Image

    from ..toy.world import SIZE

    if not isinstance(image, Image.Image):
        array = np.asarray(image, dtype=np.float32)
        if array.max() > 1.5:
            array = array / 255
        if array.shape[:2] == (SIZE, SIZE):
            return array
        image = Image.fromarray((array * 255).round().clip(0, 255).astype(np.uint8))
    image = image.convert("RGB")
    if image.size != (SIZE, SIZE):
        image = image.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255


def readers_pick(prompt_1: str, prompt_2: str, images: Sequence, net=None) -> list[int]:
    """The indices of the images the readers' rule ranks best (several when they tie)."""
    from ..toy.readers import read

    named_1, named_2 = _named(prompt_1), _named(prompt_2)
    readings = read([_array(image) for image in images], net)
    scores = [_score(r, named_1, named_2) for r in readings]
    best = max(scores)
    return [i for i, s in enumerate(scores) if s == best]


def readers_chooser(seed: int = 0, net=None) -> Chooser:
    """A chooser for toy-world studies: the option whose read attributes cover most of both
    prompts (the largest smaller share of each prompt's named attributes, then the largest sum;
    remaining ties at random). The readers (and torch) load on the first call."""
    rng = random.Random(seed)
    loaded = {"net": net}

    def choose(prompt_1: str, prompt_2: str, images: Mapping[str, object]) -> str:
        if loaded["net"] is None:
            from ..toy.readers import load_readers

            loaded["net"] = load_readers()
        ids = list(images)
        best = readers_pick(prompt_1, prompt_2, [images[i] for i in ids], loaded["net"])
        return ids[best[0]] if len(best) == 1 else ids[rng.choice(best)]

    return choose


def readers_ranking(study_dir: str | os.PathLike, *, net=None) -> dict:
    """The readers' own ranking of the methods on a study's blend trials.

    Each blend trial's images are read and the readers' rule picks one (a tie splits the trial
    among the tied methods); a method's share is its share of the trials. Returns ``{"trials",
    "shares": {method: share}, "by_category": {category: {method: share}}, "ranking"}``.
    """
    from PIL import Image

    from ..toy.readers import load_readers

    study = Path(study_dir)
    design = json.loads((study / "design.json").read_text())
    methods = list(design["settings"]["methods"])
    net = load_readers() if net is None else net
    credit = {m: 0.0 for m in methods}
    by_category: dict[str, dict[str, float]] = {}
    counts: dict[str, int] = {}
    trials = [t for t in design["trials"] if t["kind"] == "blend"]
    for trial in trials:
        images = []
        for option in trial["options"]:
            with Image.open(study / "images" / f"{option['image']}.png") as image:
                images.append(_array(image))
        best = readers_pick(trial["prompt_1"], trial["prompt_2"], images, net)
        category = str(trial.get("category"))
        cell = by_category.setdefault(category, {m: 0.0 for m in methods})
        counts[category] = counts.get(category, 0) + 1
        for i in best:
            method = trial["options"][i]["method"]
            credit[method] = credit.get(method, 0.0) + 1 / len(best)
            cell[method] = cell.get(method, 0.0) + 1 / len(best)
    total = len(trials)
    shares = {m: (c / total if total else math.nan) for m, c in credit.items()}
    return {
        "trials": total,
        "shares": shares,
        "by_category": {c: {m: v / counts[c] for m, v in cell.items()} for c, cell in by_category.items()},
        "ranking": sorted(shares, key=lambda m: (-_finite(shares[m]), methods.index(m) if m in methods else 0)),
        "rule": "per blend trial, the option with the largest min(share of prompt 1's named attributes read, "
        "share of prompt 2's), ties broken by the sum, remaining ties split",
    }


def _finite(value: float) -> float:
    return -1.0 if math.isnan(value) else value


# --- command line --------------------------------------------------------------------------------


def rehearse(
    study_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    participants: int,
    *,
    choose: Chooser,
    random_rate: float = 0.1,
    careless: float = 0.0,
    seed: int = 0,
) -> list[SimulatedParticipant]:
    """Simulate a study without touching it: ``out_dir`` gets a copy of ``design.json`` and a link
    to (or, where links fail, a copy of) its ``images``; the study's server
    (:func:`blending.survey.server.create_app`) serves that folder in process, and the simulated
    participants' answers land in ``out_dir/answers.sqlite``."""
    import secrets
    import shutil

    from starlette.testclient import TestClient

    from .server import create_app

    study, out = Path(study_dir), Path(out_dir)
    if (out / "answers.sqlite").exists():
        raise FileExistsError(f"{out / 'answers.sqlite'} exists: rehearse into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(study / "design.json", out / "design.json")
    if not (out / "images").exists():
        try:
            (out / "images").symlink_to((study / "images").resolve(), target_is_directory=True)
        except OSError:
            shutil.copytree(study / "images", out / "images")
    app = create_app(out, admin_token=secrets.token_urlsafe(24), secret_key=secrets.token_hex(16))
    with TestClient(app) as client:
        return simulate(
            str(client.base_url),
            participants,
            choose=choose,
            random_rate=random_rate,
            careless=careless,
            seed=seed,
            client=client,
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        help="a running server's address (http://...), or a study folder to rehearse in process (see --out)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="a study folder's rehearsal: the answers and the report (default: STUDY-rehearsal next to it)",
    )
    parser.add_argument("--participants", "-n", type=int, default=20, help="how many (default: 20)")
    parser.add_argument(
        "--chooser",
        choices=("readers", "random"),
        default="readers",
        help="readers: the toy world's attribute readers (needs torch); random (default: readers)",
    )
    parser.add_argument("--random-rate", type=float, default=0.1, help="share of answers at random (default: 0.1)")
    parser.add_argument(
        "--careless", type=float, default=0.0, help="share of participants answering all at random (default: 0)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=2000, help="the rehearsal report's bootstrap (default: 2000)")


def run(args: argparse.Namespace) -> int:
    choose = readers_chooser(args.seed) if args.chooser == "readers" else random_chooser(args.seed)
    noise = {"random_rate": args.random_rate, "careless": args.careless, "seed": args.seed}
    if args.target.startswith(("http://", "https://")):
        done = simulate(args.target, args.participants, choose=choose, **noise)
        for participant in done:
            record = {"participant": participant.index, "careless": participant.careless}
            print(json.dumps({**record, "answers": len(participant.answers), "code": participant.code}))
        return 0
    from .report import answers_from_sqlite, report

    study = Path(args.target)
    out = args.out if args.out is not None else study.parent / f"{study.name}-rehearsal"
    try:
        done = rehearse(study, out, args.participants, choose=choose, **noise)
    except FileExistsError as error:
        print(f"blending survey simulate: error: {error}", file=sys.stderr)
        return 2
    truth = readers_ranking(study) if args.chooser == "readers" else None
    summary = report(
        answers_from_sqlite(out), out / "design.json", out / "report", resamples=args.resamples, truth=truth
    )
    line = (
        f"{len(done)} simulated participants; {out / 'report' / 'report.md'}: ranking {', '.join(summary['ranking'])}"
    )
    if truth is not None:
        line += f"; the readers' ranking {', '.join(truth['ranking'])}"
    print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blending survey simulate", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
