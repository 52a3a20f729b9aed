"""``blending sweep EXPERIMENT --out DIR``: run every comparison of an experiment
(:mod:`blending.experiments.schema`), resumably, into the folder's index
(:mod:`blending.experiments.index`), then write its gallery (:mod:`blending.experiments.gallery`).

The comparisons of one pair, order and ratio are cut into fixed *chunks* of seeds that fit
:data:`DEFAULT_MAX_BATCH_SIZE` images (or ``max_batch_size``), each denoised as one batch
(:func:`blending.blend_seeds`). The chunk is the unit of work: a rerun redoes a chunk only if one
of its comparisons is missing from the index, and it redoes it whole, so every image comes from
the same batch as in an uninterrupted run.

Safe to kill at any moment: images are written to a temporary name and renamed, and a comparison
enters the index only once all its images are on disk, in one transaction. PNGs are encoded and
written by a thread while the next chunk denoises.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import sqlite3
import threading
import time
from pathlib import Path

from .gallery import write_gallery
from .index import done_and_todo, open_index, record_or_refuse_run_settings
from .schema import GENERATOR_DEVICES, Comparison, Experiment, ExperimentError, comparisons

__all__ = ["DEFAULT_MAX_BATCH_SIZE", "prepare_index", "run_sweep"]

logger = logging.getLogger(__name__)

#: The most images a sweep denoises in one batch unless told otherwise; Stable Diffusion v1.4 at
#: 512x512 in float16 fits a 16 GB GPU with 12 (benchmarks/gpu-memory.md), as the notebooks use.
DEFAULT_MAX_BATCH_SIZE = 12


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


def _run_record(
    experiment: Experiment, pipe, device, dtype, scheduler: str, max_batch_size: int | None, generator_device
) -> tuple[dict, str]:
    """How this run draws, as the index records it under ``run``, and the device the seeds'
    generators are made on. With ``pipe``, what it is; without, what loading the experiment's
    model with these arguments gives."""
    import torch

    from ..loading import resolve_device
    from ..settings import library_versions

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
    connection = open_index(out, experiment, force=force, journal_mode=journal_mode)
    try:
        _, todo = done_and_todo(connection, chunks, 2 + len(experiment.methods))
        if todo:
            run, _ = _run_record(experiment, pipe, device, dtype, scheduler, max_batch_size, generator_device)
            record_or_refuse_run_settings(connection, out, run)
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
    connection = open_index(out, experiment, force=force, journal_mode=journal_mode)
    try:
        done, todo = done_and_todo(connection, chunks, 2 + len(experiment.methods))
        if todo:  # nothing to draw, nothing to check: a rerun only to score or to see loads no model
            run, generator = _run_record(experiment, pipe, device, dtype, scheduler, max_batch_size, generator_device)
            record_or_refuse_run_settings(connection, out, run)
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

    from ..scores.clip import clip_scores, load_scorer
    from ..settings import BlendResult

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
