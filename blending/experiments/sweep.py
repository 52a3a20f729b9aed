"""Experiments at scale: ``blending sweep EXPERIMENT --out DIR`` runs every comparison of an
experiment file, resumably, and indexes the images in ``DIR/index.sqlite``.

An experiment (:class:`Experiment`, read by :func:`load_experiment`) is a YAML file: a model,
methods, ratios, seeds, pairs of prompts with categories, and the denoising settings. Two ship
with the package and run by name: ``paper`` (every pair the authors show, all four methods,
their ten seeds) and ``toy`` (pairs of the controlled world, for the embedded model).

A comparison is one pair, in one order, at one ratio, for one seed: both plain images and one
blend per method. The comparisons of one pair, order and ratio are cut into fixed *chunks* of
seeds that fit :data:`DEFAULT_MAX_BATCH_SIZE` images (or ``max_batch_size``), each denoised as one
batch (:func:`blending.blend_seeds`). The chunk is the unit of work: a rerun redoes a chunk only
if one of its comparisons is missing from the index, and it redoes it whole, so every image comes
from the same batch as in an uninterrupted run.

How a run draws (model, ``max_batch_size``, dtype, device, scheduler, generator device, library
versions) is recorded in the index's ``settings`` table under ``run``; a rerun that would draw
otherwise is refused, so that the images of one index all come from one way of running.
``force`` starts over: the previous images, scores and PNG files are deleted first.

Safe to kill at any moment: images are written to a temporary name and renamed, and a comparison
enters the index only once all its images are on disk, in one transaction. PNGs are encoded and
written by a thread while the next chunk denoises. Prompts never become paths: images live at
``DIR/images/<comparison>/<image>.png``, where the comparison's name is made of numbers only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import os
import queue
import shutil
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from ..errors import InputError
from ..methods import METHODS

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "EXPERIMENTS",
    "Comparison",
    "Experiment",
    "ExperimentError",
    "Pair",
    "comparisons",
    "load",
    "gallery_html",
    "load_experiment",
    "prepare_index",
    "run_sweep",
    "write_gallery",
]

logger = logging.getLogger(__name__)

#: The experiments that ship with the package, runnable by name.
EXPERIMENTS = ("paper", "toy")

#: The most images a sweep denoises in one batch unless told otherwise; Stable Diffusion v1.4 at
#: 512x512 in float16 fits a 16 GB GPU with 12 (benchmarks/gpu-memory.md), as the notebooks use.
DEFAULT_MAX_BATCH_SIZE = 12

#: Experiment values of ``generator_device``; ``auto`` is cuda when the sweep runs on CUDA (the
#: paper authors' noise), else cpu.
GENERATOR_DEVICES = ("auto", "cpu", "cuda", "mps")

#: The SQLite journal modes an index can use. WAL lets several processes write at once, but needs a
#: file system with shared memory (not network ones such as a Google Drive mounted in Colab).
JOURNAL_MODES = ("wal", "delete")

#: Where a pair comes from, one the paper's authors show or one this project added.
SOURCES = ("authors", "ours")

_KEYS = {
    "model",
    "methods",
    "ratios",
    "seeds",
    "both_orders",
    "num_inference_steps",
    "guidance_scale",
    "negative_prompt",
    "generator_device",
    "pairs",
}
_PAIR_KEYS = {"prompt_1", "prompt_2", "category", "source"}


class ExperimentError(InputError):
    """An experiment file, or a sweep's folder, that cannot run: the message is one line naming
    the key (the command line prints it and exits with status 2)."""


@dataclass(frozen=True)
class Pair:
    """Two prompts, their category, and ``source``: ``"authors"`` (a pair the paper's authors
    show), ``"ours"`` (one this project added) or ``None`` (not said)."""

    prompt_1: str
    prompt_2: str
    category: str = ""
    source: str | None = None


@dataclass(frozen=True)
class Experiment:
    """What a sweep runs: see the module's docstring and ``blending/experiments/*.yaml``."""

    model: str
    pairs: tuple[Pair, ...]
    methods: tuple[str, ...] = tuple(METHODS)
    ratios: tuple[float, ...] = (0.5,)
    seeds: tuple[int, ...] = (0,)
    both_orders: bool = False
    num_inference_steps: int = 25
    guidance_scale: float = 7.5
    negative_prompt: str | None = None
    generator_device: str = "cpu"

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


@dataclass(frozen=True)
class Comparison:
    """One pair, in one order, at one ratio, for one seed. ``name`` is made of numbers only."""

    name: str
    pair: int
    swapped: bool
    ratio: float
    seed: int
    prompt_1: str
    prompt_2: str
    category: str
    source: str | None = None


def _fail(key: str, problem: str):
    raise ExperimentError(f"{key}: {problem}")


def _check_number(key: str, value, low: float, high: float):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        _fail(key, f"must be a number, got {value!r}")
    if not low <= value <= high:
        _fail(key, f"must be in [{low}, {high}], got {value!r}")


def _list(data: dict, key: str, default) -> list:
    value = data.get(key, default)
    if not isinstance(value, list) or not value:
        _fail(key, f"must be a non-empty list, got {value!r}")
    return value


def experiment_from_dict(data) -> Experiment:
    """An :class:`Experiment` from parsed YAML; :class:`ExperimentError` names the first problem."""
    from ..sampling import MAX_SEED  # here, so that importing this module does not import torch

    if not isinstance(data, dict):
        _fail("experiment", f"must be a mapping of keys to values, got {type(data).__name__}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        _fail(unknown[0], f"unknown key; the keys are {sorted(_KEYS)}")
    if "model" not in data or not isinstance(data["model"], str) or not data["model"]:
        _fail("model", f"must be 'embedded', a Hub id or a folder, got {data.get('model')!r}")
    methods = _list(data, "methods", list(METHODS))
    for method in methods:
        if method not in METHODS:
            _fail("methods", f"unknown method {method!r}; choose from {list(METHODS)}")
    if len(set(methods)) != len(methods):
        _fail("methods", "a method is listed twice")
    ratios = _list(data, "ratios", [0.5])
    for ratio in ratios:
        _check_number("ratios", ratio, 0, 1)
    if len(set(ratios)) != len(ratios):
        _fail("ratios", "a ratio is listed twice")
    seeds = _list(data, "seeds", [0])
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            _fail("seeds", f"every seed must be an integer in [0, 2**64 - 1], got {seed!r}")
    if len(set(seeds)) != len(seeds):
        _fail("seeds", "a seed is listed twice")
    both_orders = data.get("both_orders", False)
    if not isinstance(both_orders, bool):
        _fail("both_orders", f"must be true or false, got {both_orders!r}")
    steps = data.get("num_inference_steps", 25)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        _fail("num_inference_steps", f"must be an integer >= 1, got {steps!r}")
    guidance = data.get("guidance_scale", 7.5)
    _check_number("guidance_scale", guidance, 0, math.inf)
    negative = data.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        _fail("negative_prompt", f"must be a string, got {negative!r}")
    generator_device = data.get("generator_device", "cpu")
    if generator_device not in GENERATOR_DEVICES:
        _fail("generator_device", f"must be one of {list(GENERATOR_DEVICES)}, got {generator_device!r}")
    pairs = []
    for index, pair in enumerate(_list(data, "pairs", None)):
        where = f"pairs[{index}]"
        if not isinstance(pair, dict):
            _fail(where, f"must be a mapping with prompt_1 and prompt_2, got {pair!r}")
        unknown = sorted(set(pair) - _PAIR_KEYS)
        if unknown:
            _fail(f"{where}.{unknown[0]}", f"unknown key; a pair has {sorted(_PAIR_KEYS)}")
        for key in ("prompt_1", "prompt_2"):
            if not isinstance(pair.get(key), str) or not pair[key].strip():
                _fail(f"{where}.{key}", f"must be a non-empty string, got {pair.get(key)!r}")
        category = pair.get("category", "")
        if not isinstance(category, str):
            _fail(f"{where}.category", f"must be a string, got {category!r}")
        source = pair.get("source")
        if source is not None and source not in SOURCES:
            _fail(f"{where}.source", f"must be one of {list(SOURCES)}, got {source!r}")
        pairs.append(Pair(pair["prompt_1"], pair["prompt_2"], category, source))
    seen = set()
    for index, pair in enumerate(pairs):
        if (pair.prompt_1, pair.prompt_2) in seen:
            _fail(f"pairs[{index}]", f"duplicate pair {pair.prompt_1!r} / {pair.prompt_2!r}")
        seen.add((pair.prompt_1, pair.prompt_2))
    return Experiment(
        model=data["model"],
        pairs=tuple(pairs),
        methods=tuple(methods),
        ratios=tuple(float(r) for r in ratios),
        seeds=tuple(seeds),
        both_orders=both_orders,
        num_inference_steps=steps,
        guidance_scale=float(guidance),
        negative_prompt=negative,
        generator_device=generator_device,
    )


def load_experiment(name_or_path: str | os.PathLike) -> Experiment:
    """A shipped experiment by name (:data:`EXPERIMENTS`) or a YAML file, validated."""
    import yaml

    if str(name_or_path) in EXPERIMENTS:
        text = resources.files("blending").joinpath("experiments", f"{name_or_path}.yaml").read_text()
    else:
        path = Path(name_or_path)
        if not path.is_file():
            _fail("experiment", f"no such file {str(path)!r}, and not one of {list(EXPERIMENTS)}")
        text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        _fail("experiment", f"not valid YAML ({str(error).splitlines()[0]})")
    return experiment_from_dict(data)


def comparisons(experiment: Experiment) -> list[Comparison]:
    """Every comparison of ``experiment``, pair by pair, order, ratio, then seed."""
    found = []
    for index, pair in enumerate(experiment.pairs):
        for swapped in (False, True) if experiment.both_orders else (False,):
            prompts = (pair.prompt_2, pair.prompt_1) if swapped else (pair.prompt_1, pair.prompt_2)
            for r, ratio in enumerate(experiment.ratios):
                for seed in experiment.seeds:
                    name = f"{index:04d}-{int(swapped)}-{r:02d}-{seed}"
                    found.append(Comparison(name, index, swapped, ratio, seed, *prompts, pair.category, pair.source))
    return found


def _chunks(experiment: Experiment, max_batch_size: int | None) -> list[list[Comparison]]:
    """The units of work: the comparisons of one pair, order and ratio, in fixed chunks of seeds
    that fit ``max_batch_size`` images (at least one comparison each; ``None``: every seed)."""
    if max_batch_size is not None and (
        isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1
    ):
        raise ExperimentError(f"max_batch_size: must be an integer >= 1 or None, got {max_batch_size!r}")
    per_chunk = len(experiment.seeds)
    if max_batch_size is not None:
        per_chunk = max(1, max_batch_size // (2 + len(experiment.methods)))
    groups: dict[tuple, list[Comparison]] = {}
    for comparison in comparisons(experiment):
        groups.setdefault((comparison.pair, comparison.swapped, comparison.ratio), []).append(comparison)
    return [group[i : i + per_chunk] for group in groups.values() for i in range(0, len(group), per_chunk)]


# -- the index ------------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    comparison TEXT NOT NULL, category TEXT NOT NULL, prompt_1 TEXT NOT NULL, prompt_2 TEXT NOT NULL,
    image TEXT NOT NULL, ratio REAL NOT NULL, switch_step INTEGER, seed TEXT NOT NULL,
    path TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (comparison, image)
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scores (
    comparison TEXT NOT NULL, image TEXT NOT NULL, scorer TEXT NOT NULL,
    text_1 REAL, text_2 REAL, image_1 REAL, image_2 REAL, coverage REAL, balance REAL,
    PRIMARY KEY (comparison, image, scorer)
);
"""


def _connect(out: Path, journal_mode: str = "wal") -> sqlite3.Connection:
    """The index, created if need be, in ``journal_mode``. Where WAL cannot be set, SQLite keeps
    another mode and says which: the sweep goes on in it, with a warning."""
    if journal_mode not in JOURNAL_MODES:
        raise ExperimentError(f"journal_mode: must be one of {list(JOURNAL_MODES)}, got {journal_mode!r}")
    connection = sqlite3.connect(out / "index.sqlite", timeout=60)
    try:
        mode = connection.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()[0]
        if mode != journal_mode:
            logger.warning(
                "index: SQLite kept journal mode %s, not %s, in %s; run one process at a time there "
                "(--journal-mode delete), or write to a local disk and copy",
                mode,
                journal_mode,
                out,
            )
        connection.executescript(_SCHEMA)
    except BaseException:
        connection.close()
        raise
    return connection


def _same_experiment(stored: str, experiment: Experiment) -> bool:
    """Whether the stored experiment JSON is ``experiment``; read through
    :func:`experiment_from_dict`, so that an index written before a key was added still matches."""
    try:
        return experiment_from_dict(json.loads(stored)) == experiment
    except (ExperimentError, ValueError):
        return False


def _open_index(out: Path, experiment: Experiment, *, force: bool, journal_mode: str) -> sqlite3.Connection:
    """The index of ``out`` for ``experiment``: refused if it holds another experiment's images;
    with ``force``, emptied first (images, scores, settings and the PNG files)."""
    existed = (out / "index.sqlite").is_file()
    connection = _connect(out, journal_mode)
    try:
        stored = dict(connection.execute("SELECT key, value FROM settings").fetchall())
        if force and existed:
            _start_over(connection, out)
            stored = {}
        elif "experiment" in stored and not _same_experiment(stored["experiment"], experiment):
            raise ExperimentError(
                f"out: {str(out)!r} holds another experiment's images; choose another folder, or pass --force to start over"
            )
        if "experiment" not in stored:
            text = json.dumps(experiment.as_dict(), sort_keys=True)
            with connection:
                connection.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('experiment', ?)", (text,))
    except BaseException:
        connection.close()
        raise
    return connection


def _start_over(connection: sqlite3.Connection, out: Path) -> None:
    """Forget the previous run: its rows first, then its files (killed in between, the index
    points at nothing missing)."""
    logger.info("--force: deleting the previous run's images, scores and settings in %s", out)
    with connection:
        for table in ("images", "scores", "settings"):
            connection.execute(f"DELETE FROM {table}")
    shutil.rmtree(out / "images", ignore_errors=True)
    (out / "gallery.html").unlink(missing_ok=True)


def _run_record(
    experiment: Experiment, pipe, device, dtype, scheduler: str, max_batch_size: int | None, generator_device
) -> tuple[dict, str]:
    """How this run draws, as the index records it under ``run``, and the device the seeds'
    generators are made on. With ``pipe``, what it is; without, what loading the experiment's
    model with these arguments gives."""
    import torch

    from ..loading import resolve_device
    from ..sampling import library_versions

    if pipe is not None:
        model, device, dtype = pipe.name_or_path, torch.device(pipe.device), pipe.dtype
        scheduler = type(pipe.scheduler).__name__
        if model != experiment.model:
            logger.warning(
                "model: the index records the pipeline's %r, not the experiment's %r", model, experiment.model
            )
    else:
        model = experiment.model
        device, dtype = resolve_device(device, _torch_dtype(dtype))
    requested = generator_device or experiment.generator_device
    if requested not in GENERATOR_DEVICES:
        raise ExperimentError(f"generator_device: must be one of {list(GENERATOR_DEVICES)}, got {requested!r}")
    if requested == "auto":
        requested = "cuda" if device.type == "cuda" else "cpu"
    if requested not in ("cpu", device.type):
        raise ExperimentError(
            f"generator_device: {requested!r}, but the sweep runs on {device.type}; use 'cpu', or 'auto' for the sweep's device"
        )
    # the pipeline's own device (cuda:1 in the second process), where the noise must be drawn
    generator = "cpu" if requested == "cpu" else str(device)
    record = {
        "model": model,
        "max_batch_size": max_batch_size,
        "dtype": str(dtype).removeprefix("torch."),
        "device": device.type,
        "scheduler": scheduler,
        "generator_device": requested,
        "versions": library_versions(),
    }
    return record, generator


def _flat(run: dict) -> dict:
    """The run settings with each library's version a key of its own, for a refusal to name."""
    versions = {f"versions.{name}": version for name, version in run.get("versions", {}).items()}
    return {**{k: v for k, v in run.items() if k != "versions"}, **versions}


def _check_run(connection: sqlite3.Connection, out: Path, run: dict) -> None:
    """Record how this run draws; an :class:`ExperimentError` naming the first setting that
    differs from the run that drew the index's images (and nothing written)."""
    row = connection.execute("SELECT value FROM settings WHERE key = 'run'").fetchone()
    if row is not None:
        stored, wanted = _flat(json.loads(row[0])), _flat(run)
        changed = [key for key in sorted(set(stored) | set(wanted)) if stored.get(key) != wanted.get(key)]
        if changed:
            key = changed[0]
            raise ExperimentError(
                f"{key}: {str(out)!r} was drawn with {stored.get(key)!r}, this run would use {wanted.get(key)!r}; "
                "rerun as before, or pass --force to start over"
            )
        return
    if connection.execute("SELECT 1 FROM images LIMIT 1").fetchone() is not None:
        logger.warning("index: %s does not say how its first images were drawn; recording this run's settings", out)
    with connection:
        connection.execute(
            "INSERT OR REPLACE INTO settings (key, value) VALUES ('run', ?)", (json.dumps(run, sort_keys=True),)
        )


def _todo(connection: sqlite3.Connection, chunks: list[list[Comparison]], images_per_comparison: int):
    """The comparisons already indexed, and the chunks that lack one."""
    rows = connection.execute("SELECT comparison, COUNT(*) FROM images GROUP BY comparison").fetchall()
    done = {name for name, count in rows if count == images_per_comparison}
    return done, [chunk for chunk in chunks if any(c.name not in done for c in chunk)]


def prepare_index(
    out: str | os.PathLike,
    experiment: Experiment,
    *,
    pipe=None,
    device: str | None = None,
    dtype=None,
    scheduler: str = "UniPCMultistepScheduler",
    max_batch_size: int | None = DEFAULT_MAX_BATCH_SIZE,
    generator_device: str | None = None,
    force: bool = False,
    journal_mode: str = "wal",
) -> None:
    """Create ``out/index.sqlite`` and record (or check) the experiment and the run settings, as
    :func:`run_sweep` with the same arguments would, before several processes open it: switching
    the journal mode or creating the tables while another process does the same can fail with
    "database is locked" instead of waiting. ``force`` belongs here, then, not to the processes'
    :func:`run_sweep`."""
    chunks = _chunks(experiment, max_batch_size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    connection = _open_index(out, experiment, force=force, journal_mode=journal_mode)
    try:
        _, todo = _todo(connection, chunks, 2 + len(experiment.methods))
        if todo:
            run, _ = _run_record(experiment, pipe, device, dtype, scheduler, max_batch_size, generator_device)
            _check_run(connection, out, run)
    finally:
        connection.close()


def _write_png(image, path: Path) -> str:
    """Write ``image`` under a temporary name, then rename: a file at ``path`` is always whole."""
    import io

    encoded = io.BytesIO()
    image.save(encoded, format="PNG")
    data = encoded.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return hashlib.sha256(data).hexdigest()


class _Writer:
    """Encodes, writes and indexes the images of drawn comparisons in a thread, so that the next
    chunk denoises meanwhile (PNG encoding releases the GIL). At most ``depth`` chunks wait, so
    memory stays bounded; a comparison enters the index only once its PNGs are on disk."""

    def __init__(self, out: Path, bar, depth: int = 2):
        self.out, self.bar = out, bar
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.images, self.started = 0, time.perf_counter()
        self.thread = threading.Thread(target=self._run, name="sweep-writer", daemon=True)
        self.thread.start()

    def put(self, drawn: list) -> None:
        """Queue one chunk's ``(comparison, result)`` pairs; raise what stopped the writer, if anything did."""
        if not self._offer(drawn):
            raise self.error or RuntimeError("the sweep's writer thread stopped")

    def close(self) -> None:
        """Write everything queued, then stop; raise what stopped the writer, if anything did."""
        self._offer(None)
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _offer(self, item) -> bool:
        while self.thread.is_alive():  # a writer that failed takes nothing more
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(self.out / "index.sqlite", timeout=60)  # a connection is one thread's
            try:
                while (drawn := self.queue.get()) is not None:
                    for comparison, result in drawn:
                        self._write(connection, comparison, result)
            finally:
                connection.close()
        except BaseException as error:
            self.error = error

    def _write(self, connection: sqlite3.Connection, comparison: Comparison, result) -> None:
        rows = []
        named = {"prompt_1": result.prompt_1, "prompt_2": result.prompt_2, **result.blends}
        for image_name, image in named.items():
            relative = f"images/{comparison.name}/{image_name}.png"
            sha = _write_png(image, self.out / relative)
            rows.append(
                (
                    comparison.name,
                    comparison.category,
                    comparison.prompt_1,
                    comparison.prompt_2,
                    image_name,
                    comparison.ratio,
                    result.settings["switch_step"],
                    str(comparison.seed),  # seeds reach 2**64 - 1, beyond SQLite's integers
                    relative,
                    sha,
                )
            )
        with connection:  # the comparison enters the index whole, or not at all; no score of older images stays
            connection.execute("DELETE FROM scores WHERE comparison = ?", (comparison.name,))
            connection.executemany("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.images += len(rows)
        self.bar.update(1)
        self.bar.set_postfix(images_per_second=f"{self.images / (time.perf_counter() - self.started):.2f}")


# -- running --------------------------------------------------------------------------------------


def run_sweep(
    experiment: Experiment,
    out: str | os.PathLike,
    *,
    pipe=None,
    device: str | None = None,
    dtype=None,
    scheduler: str = "UniPCMultistepScheduler",
    max_batch_size: int | None = DEFAULT_MAX_BATCH_SIZE,
    generator_device: str | None = None,
    force: bool = False,
    journal_mode: str = "wal",
    progress: bool = True,
    process_index: int = 0,
    num_processes: int = 1,
    score: str | None = None,
) -> Path:
    """Run every comparison of ``experiment`` not yet in ``out``'s index; return ``out``.

    ``pipe`` defaults to :func:`blending.load_pipeline` of the experiment's model with ``device``,
    ``dtype`` (a torch dtype or its name) and ``scheduler``, loaded only when there is something
    to draw. ``max_batch_size``: the most images denoised at once (:data:`DEFAULT_MAX_BATCH_SIZE`
    fits a 16 GB GPU; ``None``: every seed of a pair, order and ratio at once).
    ``generator_device`` overrides the experiment's (``"auto"``: cuda when the sweep runs on CUDA,
    else cpu). A rerun that would draw otherwise than the run that drew the index's images (model,
    ``max_batch_size``, dtype, device type, scheduler, generator device, library versions) is an
    :class:`ExperimentError`; ``force`` starts over instead, deleting the previous images, scores
    and PNGs. ``journal_mode``: ``"wal"`` (several processes at once) or ``"delete"`` (for file
    systems without WAL, such as network ones; one process at a time).

    With ``num_processes`` > 1 this process runs every ``num_processes``-th chunk from
    ``process_index`` (as ``accelerate launch`` gives each process its index), after one process
    has called :func:`prepare_index` (with ``force``, if wanted). The gallery is written at the
    end by the process of index 0.

    ``score``: ``"embedded"`` or a CLIP id or folder (:func:`blending.scores.clip.load_scorer`) adds the
    blends' CLIP scores to the index's ``scores`` table, computed from the PNGs on disk, for every
    indexed comparison of this process's share that lacks them (so also after a sweep without).
    """
    from tqdm.auto import tqdm

    from ..sampling import blend_seeds

    if force and num_processes > 1:
        raise ExperimentError("force: with several processes, pass it to prepare_index, in one process, beforehand")
    chunks = _chunks(experiment, max_batch_size)[process_index::num_processes]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    connection = _open_index(out, experiment, force=force, journal_mode=journal_mode)
    try:
        done, todo = _todo(connection, chunks, 2 + len(experiment.methods))
        if todo:  # nothing to draw, nothing to check: a rerun only to score or to see loads no model
            run, generator = _run_record(experiment, pipe, device, dtype, scheduler, max_batch_size, generator_device)
            _check_run(connection, out, run)
            if pipe is None:
                from ..loading import load_pipeline

                pipe = load_pipeline(experiment.model, device=device, dtype=_torch_dtype(dtype), scheduler=scheduler)
            pipe.set_progress_bar_config(disable=True)
        planned = [c for chunk in chunks for c in chunk]
        already = sum(c.name in done for c in planned)  # so that a resumed run ends at its total
        with tqdm(total=len(planned), initial=already, disable=not progress, unit="comparison", desc="sweep") as bar:
            writer = _Writer(out, bar)
            try:
                for chunk in todo:
                    first = chunk[0]
                    results = blend_seeds(
                        pipe,
                        first.prompt_1,
                        first.prompt_2,
                        experiment.methods,
                        first.ratio,
                        seeds=[c.seed for c in chunk],
                        num_inference_steps=experiment.num_inference_steps,
                        guidance_scale=experiment.guidance_scale,
                        negative_prompt=experiment.negative_prompt,
                        max_batch_size=max_batch_size,
                        generator_device=generator,
                        progress=False,
                    )
                    # a chunk is redrawn whole, so that its missing comparisons come from the same
                    # batch as in an uninterrupted run; those already indexed stay as they are
                    writer.put([(c, r) for c, r in zip(chunk, results) if c.name not in done])
            finally:
                writer.close()
        if score is not None:
            _score_missing(connection, out, experiment, score, {c.name for c in planned}, progress)
    finally:
        connection.close()
    if process_index == 0 and num_processes == 1:
        write_gallery(out)
    return out


def _torch_dtype(dtype):
    """``dtype``, a torch dtype, its name (``"float16"``) or None, as a torch dtype or None."""
    import torch

    if not isinstance(dtype, str):
        return dtype
    if not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise ExperimentError(f"dtype: must be a torch dtype such as 'float16', got {dtype!r}")
    return getattr(torch, dtype)


def _score_missing(connection, out: Path, experiment: Experiment, score: str, names: set[str], progress: bool) -> None:
    """CLIP scores for the indexed comparisons among ``names`` that the scorer has not scored."""
    from PIL import Image
    from tqdm.auto import tqdm

    from ..sampling import BlendResult
    from ..scores.clip import clip_scores, load_scorer

    scored = {
        name for (name,) in connection.execute("SELECT DISTINCT comparison FROM scores WHERE scorer = ?", (score,))
    }
    images: dict[str, dict] = {}
    query = "SELECT comparison, prompt_1, prompt_2, image, path FROM images ORDER BY comparison, image"
    for comparison, prompt_1, prompt_2, image, path in connection.execute(query):
        if comparison in names and comparison not in scored:
            entry = images.setdefault(comparison, {"prompts": (prompt_1, prompt_2), "paths": {}})
            entry["paths"][image] = path
    if not images:
        return
    scorer = load_scorer(score)
    for comparison, entry in tqdm(sorted(images.items()), disable=not progress, desc="scores"):
        pictures = {image: Image.open(out / path).convert("RGB") for image, path in entry["paths"].items()}
        prompt_1, prompt_2 = entry["prompts"]
        result = BlendResult(
            prompt_1=pictures["prompt_1"],
            prompt_2=pictures["prompt_2"],
            blends={m: pictures[m] for m in experiment.methods},
            settings={"prompt_1": prompt_1, "prompt_2": prompt_2, "output_type": "pil"},
        )
        rows = [
            (
                comparison,
                method,
                score,
                *(scores.as_dict()[k] for k in ("text_1", "text_2", "image_1", "image_2", "coverage", "balance")),
            )
            for method, scores in clip_scores(result, scorer).items()
        ]
        with connection:
            connection.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def load(out: str | os.PathLike):
    """The index of a sweep as a pandas DataFrame, one row per image."""
    import pandas as pd

    index = Path(out) / "index.sqlite"
    if not index.is_file():
        raise ValueError(f"out: no sweep index at {str(index)!r}")
    with sqlite3.connect(index) as connection:
        frame = pd.read_sql_query("SELECT * FROM images ORDER BY comparison, image", connection)
    frame["seed"] = frame["seed"].map(int)
    return frame


# -- the gallery ---------------------------------------------------------------------------------


def write_gallery(out: str | os.PathLike) -> Path:
    """``out/gallery.html``: one section per category (in the experiment's order), one row per
    comparison (prompt 1, prompt 2, each method; the pair's source in a note), images referenced
    relatively, every prompt escaped as text."""
    out = Path(out)
    path = out / "gallery.html"
    temporary = path.with_name(f".gallery.html.{os.getpid()}.tmp")
    temporary.write_text(gallery_html(out), encoding="utf-8")
    os.replace(temporary, path)
    return path


_SOURCE_NOTES = {"authors": " (authors' pair)", "ours": " (ours)"}


def _alt(image: str, prompt_1: str, prompt_2: str, seed: str) -> str:
    """A gallery picture in words: what a screen reader says, and what a broken image shows."""
    from html import escape

    plain = {"prompt_1": prompt_1, "prompt_2": prompt_2}
    what = (
        f"the plain image of {plain[image]}"
        if image in plain
        else f"the {image.upper()} blend of {prompt_1} and {prompt_2}"
    )
    return escape(f"{what}, seed {seed}")


def gallery_html(out: str | os.PathLike, *, inline: bool = False) -> str:
    """The gallery of :func:`write_gallery` as text; with ``inline``, the images are embedded as
    data URIs (for a notebook or a page that does not ship the folder)."""
    import base64
    from html import escape

    out = Path(out)

    def source(path: str) -> str:
        if not inline:
            return escape(path)
        return "data:image/png;base64," + base64.b64encode((out / path).read_bytes()).decode("ascii")

    with sqlite3.connect(out / "index.sqlite") as connection:
        rows = connection.execute(
            "SELECT comparison, category, prompt_1, prompt_2, image, path FROM images ORDER BY comparison"
        ).fetchall()
        stored = dict(connection.execute("SELECT key, value FROM settings").fetchall())
    experiment = json.loads(stored.get("experiment", "{}"))
    pairs = experiment.get("pairs", [])
    columns = ["prompt_1", "prompt_2", *experiment.get("methods", [])]
    by_comparison: dict[str, dict] = {}
    for comparison, category, prompt_1, prompt_2, image, path in rows:
        entry = by_comparison.setdefault(
            comparison, {"category": category, "prompts": (prompt_1, prompt_2), "images": {}}
        )
        entry["images"][image] = path
    # the categories in the experiment's order of first appearance
    sections: dict[str, list[str]] = {pair.get("category", ""): [] for pair in pairs}
    for comparison, entry in sorted(by_comparison.items()):
        prompt_1, prompt_2 = (escape(p) for p in entry["prompts"])
        pair, seed = int(comparison.split("-", 1)[0]), comparison.rsplit("-", 1)[-1]
        cells = "".join(
            f'<td><img src="{source(entry["images"][c])}" alt="{_alt(c, *entry["prompts"], seed)}" loading="lazy"></td>'
            if c in entry["images"]
            else "<td></td>"
            for c in columns
        )
        origin = _SOURCE_NOTES.get(pairs[pair].get("source") if pair < len(pairs) else None, "")
        sections.setdefault(entry["category"], []).append(
            f"<tr><th>{prompt_1} / {prompt_2}<br><small>seed {escape(seed)}{origin}</small></th>{cells}</tr>"
        )
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join(
        f"<h2>{escape(category or 'pairs')}</h2><table><tr><th></th>{head}</tr>{''.join(lines)}</table>"
        for category, lines in sections.items()
        if lines
    )
    style = "img{width:128px;height:128px}td,th{padding:2px;font-weight:normal;text-align:left}"
    if inline:
        return f"<div><style>{style}</style>{body}</div>"
    run = json.loads(stored.get("run", "{}"))
    title = escape(f"blending sweep: {run.get('model') or experiment.get('model', '')}")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>body{{font-family:sans-serif}}{style}</style></head><body><h1>{title}</h1>{body}</body></html>\n"
    )
