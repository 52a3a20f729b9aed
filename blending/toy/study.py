"""The controlled-world study: what each blending method takes from each prompt, measured.

Every blend of a :class:`StudyDesign` (pairs of prompts, both orders, ratios, seeds, methods) is
read by the attribute readers (:mod:`blending.toy.readers`), and each attribute is given a
source: ``prompt_1``, ``prompt_2``, ``both`` (the prompts name the same value, so the blend's
value cannot tell them apart) or ``neither``. :func:`run_study` returns one record per blend;
:func:`write_records` / :func:`read_records` keep them as a CSV file, and :func:`attribute_shares`
turns them into shares with intervals that respect the design: seeds are nested in pairs, so
the intervals come from a two-stage bootstrap (pairs with replacement, then seeds with
replacement within each drawn pair; Davison & Hinkley 1997, *Bootstrap Methods*, §3.8).

``python -m blending.toy.study --out FILE.csv`` runs a design from the command line.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import logging
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..methods import METHODS

__all__ = [
    "ATTRIBUTES",
    "RESULTS_PATH",
    "SOURCES",
    "Share",
    "StudyDesign",
    "attribute_of_prompt",
    "attribute_shares",
    "compare_records",
    "design_of",
    "read_records",
    "run_study",
    "source_of",
    "write_records",
]

logger = logging.getLogger(__name__)

ATTRIBUTES = ("shape", "colour", "size")
#: Where a blend's attribute comes from. ``both``: the two prompts name the same value.
SOURCES = ("prompt_1", "prompt_2", "both", "neither")
#: The sources of an attribute that the two prompts name differently.
DISTINCT_SOURCES = ("prompt_1", "prompt_2", "neither")
#: The study's results, committed; ``python -m blending.toy.study --out`` with this path writes them (about an hour on 2 CPU cores).
RESULTS_PATH = Path(__file__).parent / "results" / "controlled-world-study.csv.gz"
#: The CLIP scores a record holds when the study runs with a scorer (see :mod:`blending.scores.clip`).
SCORE_FIELDS = ("text_1", "text_2", "image_1", "image_2", "coverage", "balance")


def attribute_of_prompt(prompt: str) -> dict[str, str]:
    """The attributes a full prompt names: "a large red circle" -> shape, colour, size."""
    from .world import COLOURS, SHAPES, SIZES

    words = prompt.split()
    found = {
        "shape": next((w for w in words if w in SHAPES), None),
        "colour": next((w for w in words if w in COLOURS), None),
        "size": next((w for w in words if w in SIZES), None),
    }
    if None in found.values():
        raise ValueError(f"prompt must name a shape, a colour and a size, got {prompt!r}")
    return found


def source_of(value: str | None, named_1: str, named_2: str) -> str:
    """Which prompt a read value comes from; ``both`` when the prompts name the same value.

    Counting a shared value once for each prompt would count that blend twice (and leave
    "neither" negative): a value both prompts name is its own outcome.
    """
    if value is not None and value == named_1 == named_2:
        return "both"
    if value is not None and value == named_1:
        return "prompt_1"
    if value is not None and value == named_2:
        return "prompt_2"
    return "neither"


@dataclass(frozen=True)
class StudyDesign:
    """What the study blends: every pair, in its order (and swapped if ``both_orders``), at every
    ratio, for every seed and method."""

    pairs: tuple[tuple[str, str], ...]
    seeds: tuple[int, ...]
    ratios: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    both_orders: bool = True
    methods: tuple[str, ...] = tuple(METHODS)
    num_inference_steps: int = 25
    guidance_scale: float = 7.5

    def __post_init__(self):
        pairs = tuple(tuple(p) for p in self.pairs)
        if not pairs or any(len(p) != 2 for p in pairs):
            raise ValueError(f"pairs must be a non-empty list of (prompt 1, prompt 2), got {self.pairs!r}")
        for pair in pairs:
            for prompt in pair:
                attribute_of_prompt(prompt)
        if not self.seeds:
            raise ValueError("seeds must not be empty")
        if not self.ratios or any(not 0 <= r <= 1 for r in self.ratios):
            raise ValueError(f"ratios must be a non-empty list of numbers in [0, 1], got {self.ratios!r}")
        unknown = [m for m in self.methods if m not in METHODS]
        if not self.methods or unknown:
            raise ValueError(f"methods must name some of {list(METHODS)}, got {self.methods!r}")
        object.__setattr__(self, "pairs", pairs)
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        object.__setattr__(self, "ratios", tuple(float(r) for r in self.ratios))
        object.__setattr__(self, "methods", tuple(self.methods))

    @property
    def orders(self) -> tuple[bool, ...]:
        """The ``swapped`` values the study runs: False, and True when both orders run."""
        return (False, True) if self.both_orders else (False,)

    @property
    def num_blends(self) -> int:
        return len(self.pairs) * len(self.orders) * len(self.ratios) * len(self.seeds) * len(self.methods)


def _records(design, pair, swapped, prompt_1, prompt_2, ratio, results, readings, scores) -> list[dict]:
    named_1, named_2 = attribute_of_prompt(prompt_1), attribute_of_prompt(prompt_2)
    records = []
    for k, result in enumerate(results):
        for method in design.methods:
            reading = readings[method][k]
            record = {
                "pair": pair,
                "swapped": swapped,
                "prompt_1": prompt_1,
                "prompt_2": prompt_2,
                "method": method,
                "ratio": ratio,
                "seed": result.settings["seed"],
                "num_inference_steps": design.num_inference_steps,
                "guidance_scale": design.guidance_scale,
            }
            for attribute in ATTRIBUTES:
                value = getattr(reading, attribute)
                record[f"{attribute}_read"] = value or ""
                record[f"{attribute}_source"] = source_of(value, named_1[attribute], named_2[attribute])
            if scores is not None:
                blend_scores = scores[k][method]
                record.update({name: float(getattr(blend_scores, name)) for name in SCORE_FIELDS})
            records.append(record)
    return records


def run_study(
    pipe,
    design: StudyDesign,
    *,
    net=None,
    scorer=None,
    max_batch_size: int | None = None,
    progress=None,
    skip=(),
    on_chunk=None,
) -> list[dict]:
    """One record per blend of ``design``: its cell, seed, what the readers see and where it comes from.

    Ratios 0 and 1 are not blended: there every method gives exactly the plain image of prompt 1
    or 2 (an invariant the tests check), so their records read the plain images of the same
    seeds. With a ``scorer`` (:func:`blending.scores.clip.load_scorer`), each record also holds the
    blend's CLIP scores (:data:`SCORE_FIELDS`). All seeds of a (pair, order, ratio) are blended
    by one :func:`blending.blend_seeds` call, in U-Net calls of at most ``max_batch_size``
    images. ``progress``, if given, is updated with the number of seeds done at each ratio (in
    all, ``design.num_blends // len(design.methods)``).

    The study runs in chunks, one per pair and order: ``skip`` names chunks ``(pair, swapped)``
    not to run (done before), and ``on_chunk(pair, swapped, records)``, if given, receives each
    chunk's records as soon as they are complete, so that a long study can resume.
    """
    from ..sampling import blend_seeds
    from ..settings import BlendResult
    from .readers import load_readers, read

    net = load_readers() if net is None else net
    records: list[dict] = []
    for pair, (first, second) in enumerate(design.pairs):
        for swapped in design.orders:
            if (pair, swapped) in skip:
                continue
            chunk_start = len(records)
            prompt_1, prompt_2 = (second, first) if swapped else (first, second)
            blended = [r for r in design.ratios if 0 < r < 1]
            plain = None
            # without a ratio strictly inside (0, 1), one call at ratio 0 still draws the plain images
            for ratio in blended or [0.0]:
                results = blend_seeds(
                    pipe,
                    prompt_1,
                    prompt_2,
                    design.methods if blended else design.methods[:1],
                    ratio,
                    seeds=list(design.seeds),
                    num_inference_steps=design.num_inference_steps,
                    guidance_scale=design.guidance_scale,
                    output_type="np",
                    progress=False,
                    max_batch_size=max_batch_size,
                )
                if progress is not None and blended:
                    progress.update(len(results))
                if plain is None:
                    plain = results
                if not blended:
                    break
                readings = {m: read([r.blends[m] for r in results], net) for m in design.methods}
                scores = None if scorer is None else [_clip_scores(r, scorer) for r in results]
                records += _records(design, pair, swapped, prompt_1, prompt_2, ratio, results, readings, scores)
            for ratio, side in ((0.0, "prompt_1"), (1.0, "prompt_2")):
                if ratio not in design.ratios:
                    continue
                # every method's blend at this ratio is the plain image (an invariant the tests check)
                as_blends = [
                    BlendResult(r.prompt_1, r.prompt_2, {m: getattr(r, side) for m in design.methods}, r.settings)
                    for r in plain
                ]
                plain_readings = read([getattr(r, side) for r in plain], net)
                readings = {m: plain_readings for m in design.methods}
                scores = None if scorer is None else [_clip_scores(r, scorer) for r in as_blends]
                records += _records(design, pair, swapped, prompt_1, prompt_2, ratio, as_blends, readings, scores)
                if progress is not None:
                    progress.update(len(plain))
            if on_chunk is not None:
                on_chunk(pair, swapped, records[chunk_start:])
    return records


def _clip_scores(result, scorer):
    from ..scores.clip import clip_scores

    return clip_scores(result, scorer)


# -- the records as a file ----------------------------------------------------------------------

_TYPES = {
    "pair": int,
    "seed": int,
    "ratio": float,
    "swapped": lambda text: text == "True",
    "num_inference_steps": int,
    "guidance_scale": float,
}


def _key(record: dict) -> tuple:
    return record["pair"], record["swapped"], record["ratio"], record["method"], record["seed"]


def _open_text(path: Path, mode: str):
    if path.suffix != ".gz":
        return path.open(mode, newline="")
    # mtime=0: the same records give the same bytes (gzip stores the time otherwise)
    binary = gzip.GzipFile(path, mode + "b", mtime=0) if mode == "w" else gzip.open(path, mode + "b")
    return io.TextIOWrapper(binary, encoding="utf-8", newline="")


def write_records(records: list[dict], path: Path) -> None:
    """The records as CSV (gzip-compressed if ``path`` ends in ``.gz``), one row per blend, sorted
    by cell and seed: the same records give the same bytes."""
    if not records:
        raise ValueError("records must not be empty")
    path = Path(path)
    fields = list(records[0])
    ordered = sorted(records, key=_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open_text(path, "w") as file:
        writer = csv.DictWriter(file, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for record in ordered:
            writer.writerow({k: f"{v:.4f}" if k in SCORE_FIELDS else v for k, v in record.items()})


def read_records(path: Path) -> list[dict]:
    """Records written by :func:`write_records`, with their types back."""
    with _open_text(Path(path), "r") as file:
        return [
            {k: _TYPES[k](v) if k in _TYPES else float(v) if k in SCORE_FIELDS else v for k, v in row.items()}
            for row in csv.DictReader(file)
        ]


def design_of(records: list[dict], seeds=None) -> StudyDesign:
    """The :class:`StudyDesign` that wrote ``records`` (with only ``seeds``, if given): to rerun
    part of a study and compare it with :func:`compare_records`."""
    if not records:
        raise ValueError("records must not be empty")
    pairs = {r["pair"]: (r["prompt_1"], r["prompt_2"]) for r in records if not r["swapped"]}
    settings = {(r["num_inference_steps"], r["guidance_scale"]) for r in records}
    if sorted(pairs) != list(range(len(pairs))) or len(settings) != 1:
        raise ValueError(
            "records: not the records of one study (pairs missing, or several step counts or guidance scales)"
        )
    ((num_inference_steps, guidance_scale),) = settings
    recorded_seeds = sorted({r["seed"] for r in records})
    if seeds is not None and not set(seeds) <= set(recorded_seeds):
        raise ValueError(
            f"seeds: the records hold seeds {recorded_seeds[0]}..{recorded_seeds[-1]}, not {sorted(seeds)}"
        )
    methods = {r["method"] for r in records}
    return StudyDesign(
        tuple(pairs[p] for p in range(len(pairs))),
        tuple(recorded_seeds if seeds is None else seeds),
        tuple(sorted({r["ratio"] for r in records})),
        both_orders=any(r["swapped"] for r in records),
        methods=tuple(m for m in METHODS if m in methods),
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
    )


def compare_records(expected: list[dict], actual: list[dict], *, score_tolerance: float = 3.0) -> list[str]:
    """What differs between a rerun and the records of the same seeds in ``expected``, one line
    each: a blend in only one of them, a reading or source that differs, a CLIP score that
    differs by more than ``score_tolerance``. Empty when ``actual`` reproduces ``expected``.

    Readings must match exactly; CLIP scores (``100 * cos``) move with the pixels' last bits.
    With the library versions that ran the study, a rerun matched to 0.013; with the oldest
    supported versions (``constraints/oldest.txt``) the same readings came back and single
    scores moved by up to 1.2, and on the pinned numeric paths (:mod:`blending.companion.numerics`) by up
    to 2.3 (pair 8's UNET blend at 0.5, seed 1), hence the default of 3.
    """
    seeds = {r["seed"] for r in actual}
    expected_by_key = {_key(r): r for r in expected if r["seed"] in seeds}
    actual_by_key = {_key(r): r for r in actual}
    differences = [f"{key}: not in the rerun" for key in sorted(expected_by_key.keys() - actual_by_key.keys())]
    differences += [f"{key}: not in the records" for key in sorted(actual_by_key.keys() - expected_by_key.keys())]
    for key in sorted(expected_by_key.keys() & actual_by_key.keys()):
        record, rerun = expected_by_key[key], actual_by_key[key]
        for name, value in record.items():
            other = rerun.get(name)
            if name in SCORE_FIELDS:
                both_nan = math.isnan(value) and math.isnan(other)  # balance is NaN when both text scores are 0
                if not (both_nan or abs(value - other) <= score_tolerance):
                    differences.append(f"{key}: {name} {value:.4f}, rerun {other:.4f}")
            elif value != other:
                differences.append(f"{key}: {name} {value!r}, rerun {other!r}")
    return differences


# -- shares with intervals that respect the design ----------------------------------------------


@dataclass(frozen=True)
class Share:
    """Of the blends of one cell whose prompts name an attribute differently, the fraction from
    each source, with 95% intervals (two-stage bootstrap: pairs, then seeds within pairs).

    ``pairs`` counts the pairs that name the attribute differently: with few of them, the
    interval reflects little of the variation between pairs (with one, none).
    """

    swapped: bool
    method: str
    ratio: float
    attribute: str
    blends: int
    pairs: int
    fractions: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)


def _bootstrap(outcomes: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``outcomes``: pairs x seeds x sources (0/1). Resampled fractions: resamples x sources."""
    num_pairs, num_seeds, _ = outcomes.shape
    pairs = rng.integers(num_pairs, size=(resamples, num_pairs))
    seeds = rng.integers(num_seeds, size=(resamples, num_pairs, num_seeds))
    drawn = outcomes[pairs[..., None], seeds]  # resamples x pairs x seeds x sources
    return drawn.mean(axis=(1, 2))


def attribute_shares(records: list[dict], *, resamples: int = 1000, seed: int = 0) -> list[Share]:
    """For each (order, method, ratio, attribute): where the attribute comes from, with intervals.

    Only pairs whose prompts name the attribute differently count (for a shared value "from
    prompt 1" and "from prompt 2" are the same event). Every pair must have the same seeds.
    """
    rng = np.random.default_rng(seed)
    cells: dict[tuple, dict[int, dict[int, str]]] = {}
    for r in records:
        named_1, named_2 = attribute_of_prompt(r["prompt_1"]), attribute_of_prompt(r["prompt_2"])
        for attribute in ATTRIBUTES:
            if named_1[attribute] == named_2[attribute]:
                continue
            cell = cells.setdefault((r["swapped"], r["method"], r["ratio"], attribute), {})
            cell.setdefault(r["pair"], {})[r["seed"]] = r[f"{attribute}_source"]
    shares = []
    for (swapped, method, ratio, attribute), by_pair in sorted(cells.items()):
        seed_sets = {tuple(sorted(seeds)) for seeds in by_pair.values()}
        if len(seed_sets) != 1:
            raise ValueError(f"records: the pairs of cell {(swapped, method, ratio, attribute)} have different seeds")
        seeds = seed_sets.pop()
        outcomes = np.array(
            [[[by_pair[p][s] == source for source in DISTINCT_SOURCES] for s in seeds] for p in sorted(by_pair)],
            dtype=float,
        )
        fractions = outcomes.mean(axis=(0, 1))
        low, high = np.quantile(_bootstrap(outcomes, resamples, rng), [0.025, 0.975], axis=0)
        shares.append(
            Share(
                swapped,
                method,
                ratio,
                attribute,
                blends=outcomes.shape[0] * outcomes.shape[1],
                pairs=outcomes.shape[0],
                fractions={s: float(f) for s, f in zip(DISTINCT_SOURCES, fractions)},
                intervals={s: (float(lo), float(hi)) for s, lo, hi in zip(DISTINCT_SOURCES, low, high)},
            )
        )
    return shares


#: The study's pairs: every attribute differs, two attributes differ, one differs (the shape, the
#: colour, the size), and held-out combinations the model never saw.
PAIRS = (
    ("a large red circle", "a small blue star"),
    ("a small yellow square", "a large green triangle"),
    ("a large purple cross", "a small red circle"),
    ("a small green star", "a large yellow cross"),
    ("a large blue square", "a large red triangle"),  # size shared
    ("a small purple triangle", "a small purple circle"),  # only the shape differs
    ("a large green circle", "a large yellow circle"),  # only the colour differs
    ("a small red star", "a large red star"),  # only the size differs
    ("a large blue star", "a small yellow circle"),  # both held out
)


# -- the command --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blending.toy.study", description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", type=Path, help="run the study: the CSV file of per-blend records (.csv or .csv.gz)")
    target.add_argument("--check", type=Path, help="rerun the first --seeds seeds of a study's records and compare")
    parser.add_argument("--pairs", type=Path, help="a JSON file: a list of [prompt 1, prompt 2] (default: PAIRS)")
    parser.add_argument("--seeds", type=int, help="seeds 0, 1, ..., N - 1 per cell (default: 100; with --check, 3)")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--one-order", action="store_true", help="only the pairs' order, not swapped too")
    parser.add_argument("--scorer", default="embedded", help="the CLIP scorer (a hub id, a folder, embedded, or none)")
    parser.add_argument("--max-batch-size", type=int, default=150)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import json

    from tqdm.auto import tqdm

    from ..loading import load_pipeline

    try:
        if args.check:
            expected = read_records(args.check)
            design = design_of(expected, seeds=range(3 if args.seeds is None else args.seeds))
        else:
            pairs = json.loads(args.pairs.read_text()) if args.pairs else PAIRS
            seeds = tuple(range(100 if args.seeds is None else args.seeds))
            design = StudyDesign(pairs, seeds, tuple(args.ratios), both_orders=not args.one_order)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    pipe = load_pipeline("embedded")
    pipe.set_progress_bar_config(disable=True)
    scorer = None
    if args.scorer != "none":
        from ..scores.clip import load_scorer

        scorer = load_scorer(args.scorer)
    if args.check:
        with tqdm(total=design.num_blends // len(design.methods), desc="seeds") as bar:
            records = run_study(pipe, design, scorer=scorer, max_batch_size=args.max_batch_size, progress=bar)
        differences = compare_records(expected, records)
        for line in differences:
            logger.error(line)
        logger.info("%d differences between %d rerun records and %s", len(differences), len(records), args.check)
        return 1 if differences else 0
    records = _run_resumably(pipe, design, scorer, args)
    write_records(records, args.out)
    shutil.rmtree(_parts_folder(args.out))
    logger.info("wrote %d records to %s", len(records), args.out)
    return 0


def _parts_folder(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def _run_resumably(pipe, design: StudyDesign, scorer, args) -> list[dict]:
    """Run the study chunk by chunk (pair and order) into ``OUT.parts/``; rerun after an
    interruption, it runs only the chunks that are missing."""
    import dataclasses
    import hashlib
    import json

    from tqdm.auto import tqdm

    from ..loading import EMBEDDED_PATH

    parts = _parts_folder(args.out)

    # the same design, scorer and model, or the chunks done before are of another study
    model = hashlib.sha256((EMBEDDED_PATH / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()).hexdigest()
    settings = {"design": dataclasses.asdict(design), "scorer": args.scorer, "model": model}
    settings_path = parts / "settings.json"
    parts.mkdir(parents=True, exist_ok=True)
    if settings_path.exists() and json.loads(settings_path.read_text()) != json.loads(json.dumps(settings)):
        raise SystemExit(f"{parts} holds part of another study; delete it to start this one")
    settings_path.write_text(json.dumps(settings, indent=1) + "\n")
    done = {}
    for path in parts.glob("pair-*.csv"):
        _, pair, order = path.stem.split("-")
        done[(int(pair), order == "swapped")] = read_records(path)
    if done:
        logger.info("resuming: %d of %d chunks (pair, order) done", len(done), len(design.pairs) * len(design.orders))

    def keep(pair, swapped, records):
        path = parts / f"pair-{pair}-{'swapped' if swapped else 'ordered'}.csv"
        write_records(records, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)  # a chunk is there whole or not at all

    per_chunk = len(design.ratios) * len(design.seeds)
    total = len(design.pairs) * len(design.orders) * per_chunk
    with tqdm(total=total, initial=len(done) * per_chunk, desc="seeds") as bar:
        records = run_study(
            pipe, design, scorer=scorer, max_batch_size=args.max_batch_size, progress=bar, skip=set(done), on_chunk=keep
        )
    return [r for chunk in done.values() for r in chunk] + records


if __name__ == "__main__":
    sys.exit(main())
