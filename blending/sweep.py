"""Experiments at scale: ``blending sweep EXPERIMENT --out DIR`` runs every comparison of an
experiment file, resumably, and indexes the images in ``DIR/index.sqlite``.

An experiment (:class:`Experiment`, read by :func:`load_experiment`) is a YAML file: a model,
methods, ratios, seeds, pairs of prompts with categories, and the denoising settings. Two ship
with the package and run by name: ``paper`` (every pair the authors show, all four methods,
their ten seeds) and ``toy`` (pairs of the controlled world, for the embedded model).

A comparison is one pair, in one order, at one ratio, for one seed: both plain images and one
blend per method. The comparisons of one pair, order and ratio are cut into fixed *chunks* of
seeds, each denoised as one batch (:func:`blending.blend_seeds`). The chunk is the unit of work:
a rerun redoes a chunk only if one of its comparisons is missing from the index, and it redoes
it whole, so every image comes from the same batch as in an uninterrupted run.

Safe to kill at any moment: images are written to a temporary name and renamed, and a comparison
enters the index only once all its images are on disk, in one transaction. Prompts never become
paths: images live at ``DIR/images/<comparison>/<image>.png``, where the comparison's name is made
of numbers only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import numbers
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from .methods import METHODS
from .pipeline import MAX_SEED

__all__ = [
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

_KEYS = {
    "model",
    "methods",
    "ratios",
    "seeds",
    "both_orders",
    "num_inference_steps",
    "guidance_scale",
    "negative_prompt",
    "pairs",
}
_PAIR_KEYS = {"prompt_1", "prompt_2", "category"}


class ExperimentError(ValueError):
    """An experiment file that cannot run: the message is one line naming the key."""


@dataclass(frozen=True)
class Pair:
    prompt_1: str
    prompt_2: str
    category: str = ""


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
        pairs.append(Pair(pair["prompt_1"], pair["prompt_2"], category))
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
                    found.append(Comparison(name, index, swapped, ratio, seed, *prompts, pair.category))
    return found


def _chunks(experiment: Experiment, max_batch_size: int | None) -> list[list[Comparison]]:
    """The units of work: the comparisons of one pair, order and ratio, in fixed chunks of seeds
    that fit ``max_batch_size`` images (at least one comparison each)."""
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


def _connect(out: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(out / "index.sqlite", timeout=60)
    connection.execute("PRAGMA journal_mode=WAL")  # several processes may write
    connection.executescript(_SCHEMA)
    return connection


def _check_settings(connection: sqlite3.Connection, wanted: dict, force: bool, out: Path) -> None:
    stored = dict(connection.execute("SELECT key, value FROM settings WHERE key = 'experiment'").fetchall())
    wanted_json = json.dumps(wanted["experiment"], sort_keys=True)
    if stored and stored["experiment"] != wanted_json:
        if not force:
            raise ExperimentError(
                f"out: {str(out)!r} holds another experiment's images; choose another folder, or pass --force to start over"
            )
        with connection:
            connection.execute("DELETE FROM images")
            connection.execute("DELETE FROM settings")
    with connection:
        for key, value in wanted.items():
            text = json.dumps(value, sort_keys=True)
            connection.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, text))


def prepare_index(out: str | os.PathLike, experiment: Experiment, *, force: bool = False) -> None:
    """Create ``out/index.sqlite`` in WAL mode and record (or check) the experiment, before several
    processes open it: switching the journal mode or creating the tables while another process
    does the same can fail with "database is locked" instead of waiting."""
    from .pipeline import library_versions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    connection = _connect(out)
    try:
        _check_settings(connection, {"experiment": experiment.as_dict(), "versions": library_versions()}, force, out)
    finally:
        connection.close()


def _done(connection: sqlite3.Connection, images_per_comparison: int) -> set[str]:
    rows = connection.execute("SELECT comparison, COUNT(*) FROM images GROUP BY comparison").fetchall()
    return {name for name, count in rows if count == images_per_comparison}


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


# -- running --------------------------------------------------------------------------------------


def run_sweep(
    experiment: Experiment,
    out: str | os.PathLike,
    *,
    pipe=None,
    device: str | None = None,
    max_batch_size: int | None = None,
    force: bool = False,
    progress: bool = True,
    process_index: int = 0,
    num_processes: int = 1,
    score: str | None = None,
) -> Path:
    """Run every comparison of ``experiment`` not yet in ``out``'s index; return ``out``.

    ``pipe`` defaults to :func:`blending.load_pipeline` of the experiment's model on ``device``,
    loaded only when there is something to draw. With
    ``num_processes`` > 1 this process runs every ``num_processes``-th chunk from
    ``process_index`` (as ``accelerate launch`` gives each process its index). The gallery is
    written at the end by the process of index 0.

    ``score``: ``"embedded"`` or a CLIP id or folder (:func:`blending.scores.load_scorer`) adds the
    blends' CLIP scores to the index's ``scores`` table, computed from the PNGs on disk, for every
    indexed comparison of this process's share that lacks them (so also after a sweep without).
    """
    from tqdm.auto import tqdm

    from .pipeline import blend_seeds, library_versions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    connection = _connect(out)
    wanted = {"experiment": experiment.as_dict(), "versions": library_versions()}
    _check_settings(connection, wanted, force, out)
    images_per_comparison = 2 + len(experiment.methods)
    done = _done(connection, images_per_comparison)
    chunks = _chunks(experiment, max_batch_size)[process_index::num_processes]
    todo = [chunk for chunk in chunks if any(c.name not in done for c in chunk)]
    total = sum(len(chunk) for chunk in chunks)
    bar = tqdm(total=total, disable=not progress, unit="comparison", desc="sweep")
    bar.update(total - sum(len(chunk) for chunk in todo))
    if todo and pipe is None:
        from .loading import load_pipeline

        pipe = load_pipeline(experiment.model, device=device)
    if pipe is not None:
        pipe.set_progress_bar_config(disable=True)
    started, images = time.perf_counter(), 0
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
            progress=False,
        )
        for comparison, result in zip(chunk, results):
            if comparison.name in done:
                continue  # redrawn with its chunk, so that the others come from the same batch
            rows = []
            named = {"prompt_1": result.prompt_1, "prompt_2": result.prompt_2, **result.blends}
            for image_name, image in named.items():
                relative = f"images/{comparison.name}/{image_name}.png"
                sha = _write_png(image, out / relative)
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
            with connection:  # the comparison enters the index whole, or not at all
                connection.executemany("INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            images += len(rows)
            bar.update(1)
            bar.set_postfix(images_per_second=f"{images / (time.perf_counter() - started):.2f}")
    bar.close()
    if score is not None:
        _score_missing(connection, out, experiment, score, {c.name for chunk in chunks for c in chunk}, progress)
    connection.close()
    if process_index == 0 and num_processes == 1:
        write_gallery(out)
    return out


def _score_missing(connection, out: Path, experiment: Experiment, score: str, names: set[str], progress: bool) -> None:
    """CLIP scores for the indexed comparisons among ``names`` that the scorer has not scored."""
    from PIL import Image
    from tqdm.auto import tqdm

    from .pipeline import BlendResult
    from .scores import clip_scores, load_scorer

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
    """``out/gallery.html``: one section per category, one row per comparison (prompt 1, prompt 2,
    each method), images referenced relatively, every prompt escaped as text."""
    out = Path(out)
    path = out / "gallery.html"
    temporary = path.with_name(f".gallery.html.{os.getpid()}.tmp")
    temporary.write_text(gallery_html(out), encoding="utf-8")
    os.replace(temporary, path)
    return path


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
    columns = ["prompt_1", "prompt_2", *experiment.get("methods", [])]
    by_comparison: dict[str, dict] = {}
    for comparison, category, prompt_1, prompt_2, image, path in rows:
        entry = by_comparison.setdefault(
            comparison, {"category": category, "prompts": (prompt_1, prompt_2), "images": {}}
        )
        entry["images"][image] = path
    sections: dict[str, list[str]] = {}
    for comparison, entry in sorted(by_comparison.items()):
        prompt_1, prompt_2 = (escape(p) for p in entry["prompts"])
        cells = "".join(
            f'<td><img src="{source(entry["images"][c])}" alt="{escape(c)}" loading="lazy"></td>'
            if c in entry["images"]
            else "<td></td>"
            for c in columns
        )
        seed = comparison.rsplit("-", 1)[-1]
        sections.setdefault(entry["category"], []).append(
            f"<tr><th>{prompt_1} / {prompt_2}<br><small>seed {escape(seed)}</small></th>{cells}</tr>"
        )
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join(
        f"<h2>{escape(category or 'pairs')}</h2><table><tr><th></th>{head}</tr>{''.join(lines)}</table>"
        for category, lines in sections.items()
    )
    style = "img{width:128px;height:128px}td,th{padding:2px;font-weight:normal;text-align:left}"
    if inline:
        return f"<div><style>{style}</style>{body}</div>"
    title = escape(f"blending sweep: {experiment.get('model', '')}")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>body{{font-family:sans-serif}}{style}</style></head><body><h1>{title}</h1>{body}</body></html>\n"
    )
