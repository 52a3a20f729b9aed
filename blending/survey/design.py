"""``blending survey make RUN_DIR --out STUDY_DIR``: a blind study's design, made from a sweep.

:func:`make_study` reads a folder written by ``blending sweep`` (its ``index.sqlite`` and PNGs, see
:mod:`blending.experiments.index`) and writes ``STUDY_DIR/design.json`` and ``STUDY_DIR/images/``
in the format of :mod:`blending.survey`.

Trials
------
A ``blend`` trial is one comparison of the sweep: one unordered pair of prompts (``pair``, the
experiment file's pair index), in one ``order`` (``"given"``: the experiment file's, or
``"swapped"``), for one seed, and, only when the chosen comparisons hold several ratios, one
``ratio`` (then every trial has a ``ratio`` key after ``seed``, ``null`` for attention trials;
with one ratio there is no such key). Its options are the blends of every chosen method, one each,
and the participant picks the best blend of the two prompts. Only comparisons that hold a blend of
every chosen method become trials (a sweep still running has some without).

The blend trials are numbered ``t0001``, ``t0002``, ... in the design's cycle: by ratio, then by
*round*, then by pair (the pair varies fastest). A round is one seed in one order, every pair;
with both orders, round ``k`` of ``2 S`` is seed ``k % S`` of the ``S`` seeds, in the given order
when ``k // S + k % S`` is even, so that the orders alternate from round to round and the two
orders of one pair and seed stand ``S`` rounds apart. The attention trials follow, numbered on.

Options: the i-th blend trial (from 0) lists the methods of ``settings.methods`` (the paper's
order, :data:`blending.METHODS`) rotated left by ``i``, so that across the design every method
stands in every position equally often (exactly when the number of blend trials is a multiple of
the number of methods, within one otherwise). This only keeps the stored design neutral: the
server shuffles the options again for each participant.

Blocks
------
Each block holds ``trials_per_participant`` blend trials (by default every blend trial, at most
40) and ``attention_checks`` attention trials. The blend trials of the cycle are dealt out in
turn: block ``b`` takes the ``trials_per_participant`` trials starting at ``b *
trials_per_participant``, wrapping around (a Latin-square-style rotation), and there are ``N /
gcd(N, trials_per_participant)`` blocks for ``N`` blend trials, so that across the blocks every
blend trial is seen equally often (``trials_per_participant / gcd`` times; once when
``trials_per_participant`` divides ``N``). A block holds consecutive trials of the cycle, so its
pairs are as evenly spread as its length allows (each ``T / P`` times, give or take one, for
``P`` pairs), and a block of at most ``P x S`` trials never shows one pair and seed in both
orders. Within a block the trials are ordered by a hash of the study's ``seed``, the block and
the trial id, and the block's attention trials are spread evenly among them: the c-th of ``A``
after ``(c + 1) T / (A + 1)`` blend trials, rounded down (with 40 and 2: after the 13th and the
26th). The k-th participant gets block ``k % len(blocks)``. Everything is a function of the inputs
and ``seed``: the same inputs give the same design.json, byte for byte, and the same image files.

Attention checks
----------------
An ``attention`` trial asks the same question of one prompt twice (``prompt_1 == prompt_2``,
``category``, ``pair`` and ``order`` null): its ``answer`` is the option showing that prompt's
plain image (``method: "plain"``) from the sweep, at the trial's seed; the other options are plain
images of other prompts (``method: "distractor"``), at the same seed where the sweep has one. It
has as many options as a blend trial, fewer only if the sweep has fewer prompts. Every block has
attention trials of its own; they take the prompts in turn (an order drawn from ``seed``), and the
answer's position rotates from one to the next.

Blindness
---------
Nothing a participant can receive names a method. Image files are ``images/<image id>.png``,
where the image id is the first 20 hex digits of a SHA-256 of the study's seed and the source
PNG's SHA-256 (the index's); the PNGs are re-encoded from their RGB pixels alone (no text chunk,
ICC profile, EXIF or physical size: none of the sweep's metadata, and not its file names, which
name the method). Option ids are the first 12 hex digits of a SHA-256 of the seed, the trial id
and the image id; trial ids are ``t`` and a number. Hex digits cannot spell a method's name. The
methods stand only in the options' ``method`` fields, which, with ``kind`` and ``answer``, stay on
the server. Identical pixels share one image id: a method that gives the same image in both
orders (TEXTUAL at ratio 0.5 may) shows the same image, and the same URL, in both orders' trials,
which are never in one block of at most ``P x S`` trials.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import numbers
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError
from ..methods import METHODS

__all__ = ["DEFAULT_TRIALS_PER_PARTICIPANT", "FORMAT", "make_study"]

logger = logging.getLogger(__name__)

#: The value of design.json's ``format``.
FORMAT = "blending-survey/1"

#: The most blend trials a participant sees unless told otherwise.
DEFAULT_TRIALS_PER_PARTICIPANT = 40

_PLAIN = ("prompt_1", "prompt_2")


def _fail(key: str, problem: str):
    raise InputError(f"{key}: {problem}")


def _hex(*parts) -> str:
    """A SHA-256 of ``parts``, as hex: the source of every opaque id and every seeded order."""
    return hashlib.sha256("\x1f".join(str(part) for part in parts).encode("utf-8")).hexdigest()


def _count(key: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        _fail(key, f"must be an integer >= {low}, got {value!r}")
    return int(value)


def _read_sweep(run_dir: Path):
    """The sweep's images (a DataFrame), its experiment and its run settings; refused, naming
    ``run_dir``, where there is no index, no experiment or no image."""
    from ..experiments.index import load
    from ..experiments.schema import ExperimentError, experiment_from_dict

    index = run_dir / "index.sqlite"
    if not index.is_file():
        _fail("run_dir", f"no sweep index at {str(index)!r}; pass a folder written by 'blending sweep'")
    try:
        connection = sqlite3.connect(f"{index.resolve().as_uri()}?mode=ro", uri=True)
        try:
            stored = dict(connection.execute("SELECT key, value FROM settings").fetchall())
        finally:
            connection.close()
    except sqlite3.Error as error:
        _fail("run_dir", f"{str(index)!r} is not a sweep index ({error})")
    if "experiment" not in stored:
        _fail("run_dir", f"the index {str(index)!r} does not say its experiment")
    try:
        experiment = experiment_from_dict(json.loads(stored["experiment"]))
    except (ExperimentError, ValueError) as error:
        _fail("run_dir", f"the index's experiment cannot be read ({error})")
    run = json.loads(stored.get("run", "{}"))
    frame = load(run_dir)
    if frame.empty:
        _fail("run_dir", f"the sweep at {str(run_dir)!r} has no images yet")
    return frame, experiment, run


def _experiment_name(experiment) -> str | None:
    """The shipped experiment's name (``paper``, ``toy``) if the sweep ran one, its model aside
    (``blending sweep --model`` replaces it); else None: the index does not record a file's name."""
    from dataclasses import replace

    from ..experiments.schema import EXPERIMENTS, load_experiment

    for name in EXPERIMENTS:
        if replace(load_experiment(name), model=experiment.model) == experiment:
            return name
    return None


def _chosen_methods(methods, experiment) -> list[str]:
    swept = [m for m in METHODS if m in experiment.methods]
    if methods is None:
        chosen = swept
    else:
        if (
            isinstance(methods, str)
            or not isinstance(methods, Iterable)
            or not all(isinstance(m, str) for m in methods)
        ):
            _fail("methods", f"must be a list of method names, got {methods!r}")
        methods = list(methods)
        for method in methods:
            if method not in METHODS:
                _fail("methods", f"unknown method {method!r}; choose from {list(METHODS)}")
            if method not in swept:
                _fail("methods", f"the sweep has no {method!r} blends; it has {swept}")
        if len(set(methods)) != len(methods):
            _fail("methods", "a method is listed twice")
        chosen = [m for m in METHODS if m in methods]  # the paper's order, whatever order was given
    if len(chosen) < 2:
        _fail("methods", f"a comparison needs at least 2 methods, got {chosen}")
    return chosen


def _source_file(run_dir: Path, path: str, sha256: str) -> Path:
    """The PNG at ``path`` in the sweep, checked against the index's SHA-256."""
    relative = Path(path)
    if relative.is_absolute() or ".." in relative.parts:
        _fail("run_dir", f"the index names an image outside the sweep's folder: {path!r}")
    source = run_dir / relative
    if not source.is_file():
        _fail("run_dir", f"the index's image {path!r} is missing")
    if hashlib.sha256(source.read_bytes()).hexdigest() != sha256:
        _fail("run_dir", f"the image {path!r} is not the one the index recorded (its SHA-256 differs)")
    return source


def _pixels_only(source: Path) -> bytes:
    """The PNG at ``source`` re-encoded from its RGB pixels alone: no chunk of the original but
    the pixels (no text, ICC profile, EXIF or physical size)."""
    from PIL import Image

    with Image.open(source) as image:
        rgb = image.convert("RGB")
        bare = Image.frombytes("RGB", rgb.size, rgb.tobytes())
    encoded = io.BytesIO()
    bare.save(encoded, format="PNG", compress_level=6)
    return encoded.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


class _Options:
    """Options and their images: each option's id is opaque and unique within the study."""

    def __init__(self, run_dir: Path, seed: int):
        self.run_dir, self.seed = run_dir, seed
        self.images: dict[str, Path] = {}  # image id -> source PNG
        self.ids: set[str] = set()

    def image_id(self, row) -> str:
        return _hex("image", self.seed, row.sha256)[:20]

    def option(self, trial_id: str, row, method: str) -> dict:
        image = self.image_id(row)
        if image not in self.images:
            self.images[image] = _source_file(self.run_dir, row.path, row.sha256)
        option = _hex("option", self.seed, trial_id, image)[:12]
        for again in range(1, 100):  # two options of one trial on the same pixels (at ratio 0 or 1, say)
            if option not in self.ids:
                break
            option = _hex("option", self.seed, trial_id, image, again)[:12]
        self.ids.add(option)
        return {"id": option, "image": image, "method": method}


def _rotated(items: list, by: int) -> list:
    by %= len(items)
    return items[by:] + items[:by]


def _place(comparison, experiment) -> tuple[int, int, int]:
    """Where ``comparison`` stands in the design's cycle of blend trials: by ratio, then by round,
    then by pair. A round is one seed in one order, every pair; with both orders, round ``k`` is
    seed ``k % S`` of the ``S`` seeds, in the given order if ``k // S + k % S`` is even: the orders
    alternate from round to round, and the two orders of one seed stand ``S`` rounds apart."""
    seeds = len(experiment.seeds)
    s = experiment.seeds.index(comparison.seed)
    round_ = s + seeds * ((s + comparison.swapped) % 2) if experiment.both_orders else s
    return experiment.ratios.index(comparison.ratio), round_, comparison.pair


def _attention_targets(plain, prompts: list[str], seed: int, count: int) -> list[tuple[str, int]]:
    """The prompt and seed of each of ``count`` attention trials: the prompts in turn, in an order
    drawn from ``seed``, each at its seeds in turn."""
    prompts = sorted(prompts, key=lambda p: _hex("attention", seed, p))
    at = {p: sorted((s for q, s in plain if q == p), key=lambda s: _hex("attention", seed, p, s)) for p in prompts}
    targets = []
    for k in range(count):
        prompt = prompts[k % len(prompts)]
        targets.append((prompt, at[prompt][k // len(prompts) % len(at[prompt])]))
    return targets


def _blend_comparisons(frame, experiment, methods: list[str]):
    """The comparisons that hold a blend of every chosen method, in the design's cycle
    (:func:`_place`), each with its rows by image name."""
    from ..experiments.schema import comparisons

    known = {c.name: c for c in comparisons(experiment)}
    rows = {}
    for row in frame.itertuples(index=False):
        rows.setdefault(row.comparison, {})[row.image] = row
    found = []
    for name, images in sorted(rows.items()):
        if name not in known:
            logger.warning("run_dir: comparison %s is not one of the experiment's; left out", name)
            continue
        missing = [m for m in methods if m not in images]
        if missing:
            logger.warning("run_dir: comparison %s has no %s blend; left out", name, missing[0])
            continue
        found.append((known[name], images))
    found.sort(key=lambda item: _place(item[0], experiment))
    return found, known


def _plain_images(frame, known) -> dict[tuple[str, int], object]:
    """Each prompt's plain image at each seed: the row of the first comparison that holds it."""
    plain = {}
    for row in frame.sort_values(["comparison", "image"]).itertuples(index=False):
        if row.image in _PLAIN and row.comparison in known:
            prompt = row.prompt_1 if row.image == "prompt_1" else row.prompt_2
            plain.setdefault((prompt, int(row.seed)), row)
    return plain


def _attention_trial(
    trial_id: str, k: int, target, plain, prompts: list[str], size: int, ratio: bool, options: _Options
) -> dict:
    """The ``k``-th attention trial: ``target`` (a prompt and a seed)'s plain image among those of
    other prompts, ``size`` options in all, the answer at position ``k`` modulo their count."""
    prompt, at = target
    seed = options.seed
    others = sorted((p for p in prompts if p != prompt), key=lambda p: _hex("distractor", seed, trial_id, p))
    chosen = [options.option(trial_id, plain[target], "plain")]
    images = {chosen[0]["image"]}
    for other in others:
        if len(chosen) == size:
            break
        row = plain.get((other, at))
        if row is None:  # the sweep lacks this prompt at this seed: its first seed
            row = plain[min((key for key in plain if key[0] == other), key=lambda key: key[1])]
        if options.image_id(row) in images:  # the same pixels as an option already there
            continue
        chosen.append(options.option(trial_id, row, "distractor"))
        images.add(chosen[-1]["image"])
    trial = {"id": trial_id, "kind": "attention", "category": None, "pair": None, "order": None, "seed": at}
    if ratio:
        trial["ratio"] = None
    trial.update(prompt_1=prompt, prompt_2=prompt, answer=chosen[0]["id"], options=_rotated(chosen, -k))
    return trial


def _design_text(design: dict) -> bytes:
    return (json.dumps(design, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def make_study(
    run_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    methods=None,
    trials_per_participant: int | None = None,
    attention_checks: int = 2,
    seed: int = 0,
) -> Path:
    """Write a blind study of the sweep at ``run_dir`` into ``out`` (``design.json`` and
    ``images/``, see the module's docstring) and return the path of ``out/design.json``.

    ``methods``: the methods to compare (by default every method the sweep has), listed in the
    paper's order (:data:`blending.METHODS`) whatever order they are given in; at least 2.
    ``trials_per_participant``: blend trials per block (by default every blend trial, at most
    40). ``attention_checks``: attention trials per block. ``seed``: the blocks' order and the
    opaque ids. An ``out`` that holds this very design is left as it is (missing images are
    written); one that holds another design is refused. Bad input raises
    :class:`~blending.InputError`, one line naming the parameter.
    """
    seed = _count("seed", seed, 0)
    attention_checks = _count("attention_checks", attention_checks, 0)
    if trials_per_participant is not None:
        trials_per_participant = _count("trials_per_participant", trials_per_participant, 1)
    run_path, out = Path(run_dir), Path(out)
    if out.exists() and not out.is_dir():
        _fail("out", f"{str(out)!r} is a file, not a folder")
    frame, experiment, run = _read_sweep(run_path)
    methods = _chosen_methods(methods, experiment)

    found, known = _blend_comparisons(frame, experiment, methods)
    if not found:
        _fail("run_dir", f"the sweep at {str(run_path)!r} has no comparison with a blend of each of {methods}")
    n = len(found)
    if trials_per_participant is None:
        trials_per_participant = min(n, DEFAULT_TRIALS_PER_PARTICIPANT)
    elif trials_per_participant > n:
        _fail("trials_per_participant", f"must be at most the sweep's {n} blend trials, got {trials_per_participant}")
    if attention_checks > trials_per_participant:
        _fail(
            "attention_checks",
            f"must be at most trials_per_participant ({trials_per_participant}), got {attention_checks}",
        )
    several_ratios = len({c.ratio for c, _ in found}) > 1

    options = _Options(run_path, seed)
    trials = []
    for i, (comparison, images) in enumerate(found):
        trial_id = f"t{i + 1:04d}"
        trial = {
            "id": trial_id,
            "kind": "blend",
            "category": comparison.category,
            "pair": comparison.pair,
            "order": "swapped" if comparison.swapped else "given",
            "seed": comparison.seed,
        }
        if several_ratios:
            trial["ratio"] = comparison.ratio
        trial["prompt_1"], trial["prompt_2"] = comparison.prompt_1, comparison.prompt_2
        trial["options"] = [options.option(trial_id, images[m], m) for m in _rotated(methods, i)]
        trials.append(trial)

    # blocks: a rotation over the cycle of blend trials, every trial seen equally often
    blocks_count = n // math.gcd(n, trials_per_participant)
    if blocks_count * trials_per_participant > 2 * n and blocks_count > 1:
        logger.warning(
            "trials_per_participant: %d blend trials in blocks of %d take %d blocks to balance (each trial seen %d "
            "times); a divisor of %d needs fewer",
            n,
            trials_per_participant,
            blocks_count,
            blocks_count * trials_per_participant // n,
            n,
        )
    short = len(experiment.pairs) * len(experiment.seeds)  # P x S: the two orders' distance in the cycle
    if experiment.both_orders and trials_per_participant > short:
        logger.warning(
            "trials_per_participant: blocks of %d trials show some pairs at one seed in both orders, where a blend "
            "symmetric in its prompts (TEXTUAL at ratio 0.5) shows the same image twice; at most %d avoids it",
            trials_per_participant,
            short,
        )
    plain = _plain_images(frame, known)
    held = {prompt for prompt, _ in plain}
    prompts = [p for pair in experiment.pairs for p in (pair.prompt_1, pair.prompt_2) if p in held]
    prompts = list(dict.fromkeys(prompts))
    targets = _attention_targets(plain, prompts, seed, blocks_count * attention_checks)
    size = min(len(methods), len(prompts))
    blocks = []
    for b in range(blocks_count):
        start = b * trials_per_participant
        members = [trials[(start + j) % n]["id"] for j in range(trials_per_participant)]
        members.sort(key=lambda trial_id: _hex("order", seed, b, trial_id))
        checks = []
        for c in range(attention_checks):
            k = b * attention_checks + c
            trial_id = f"t{n + k + 1:04d}"
            trials.append(_attention_trial(trial_id, k, targets[k], plain, prompts, size, several_ratios, options))
            checks.append(trial_id)
        for c, check in enumerate(checks):  # the c-th check after (c + 1) / (checks + 1) of the block's blend trials
            members.insert((c + 1) * trials_per_participant // (attention_checks + 1) + c, check)
        blocks.append(members)

    name = _experiment_name(experiment)
    design = {
        "format": FORMAT,
        # the folder's name, not its path: the same sweep gives the same design wherever it lies
        "source": {"run": Path(run_dir).name, "experiment": name, "model": run.get("model", experiment.model)},
        "settings": {
            "methods": methods,
            "trials_per_participant": trials_per_participant,
            "attention_checks": attention_checks,
            "seed": seed,
        },
        "trials": trials,
        "blocks": blocks,
    }
    text = _design_text(design)

    path = out / "design.json"
    if path.exists() and path.read_bytes() != text:
        _fail("out", f"{str(out)!r} already holds a different design; choose another folder")
    (out / "images").mkdir(parents=True, exist_ok=True)
    written = 0
    for image, source in sorted(options.images.items()):
        target = out / "images" / f"{image}.png"
        if target.is_file():  # written whole by an earlier run: the same id, the same pixels, the same bytes
            continue
        _write_atomically(target, _pixels_only(source))
        written += 1
    extra = sorted(p.name for p in (out / "images").iterdir() if p.stem not in options.images)
    if extra:
        logger.warning("out: %d file(s) in %s are not in the design, such as %s", len(extra), out / "images", extra[0])
    if path.exists():
        logger.info("out: %s already holds this design; %d image(s) written", out, written)
    else:
        _write_atomically(path, text)  # last: a design.json means every image is there
        logger.info(
            "out: a study of %d blend trials and %d attention trials in %d blocks, %d images, in %s",
            n,
            len(trials) - n,
            blocks_count,
            len(options.images),
            out,
        )
    return path
