"""Regenerate every figure: run each notebook with papermill, then write a manifest.

``python -m blending.companion.figures`` runs the notebooks in ``notebooks/`` in place with the embedded
model on the CPU; ``--model CompVis/stable-diffusion-v1-4 --device cuda`` draws them with the
paper's model. Each notebook writes its figures as PNGs under ``notebooks/figures/<notebook>/``;
``notebooks/figures/manifest.json`` records the model, device, library versions, each notebook's
model, parameters and seconds; ``notebooks/status.json`` (committed, see :mod:`blending.companion.status`)
records who drew each chapter and what the last ``--check`` found, for the book's *Status* page.

A notebook whose metadata names ``{"blending": {"only_model": "embedded"}}`` (the controlled-world
chapter, whose attribute readers only understand the toy world) runs with that model whatever
``--model`` says. Each notebook runs into a temporary file that replaces the committed one only
if the run succeeds; a failed run is kept beside it as ``<notebook>.failed.ipynb``.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from . import numerics, status
from .fingerprint import RECORD

__all__ = ["NotebooksFailed", "main", "regenerate", "verify"]

logger = logging.getLogger(__name__)

NOTEBOOKS = Path("notebooks")
# Execution details that change on every run (the manifest keeps the timings instead), and the
# state of live widgets, which has random ids and means nothing without a kernel.
_VOLATILE_METADATA = ("papermill", "execution", "widgets")
_WIDGET = "application/vnd.jupyter.widget-view+json"
_FAILED_SUFFIX = ".failed.ipynb"


class NotebooksFailed(RuntimeError):
    """Some notebooks failed.

    ``failed`` maps each one's name to its failed run, kept beside it (None if papermill wrote none).
    """

    def __init__(self, failed: dict[str, Path | None]):
        self.failed = failed
        runs = ", ".join(f"{name} (its run: {path})" for name, path in failed.items())
        super().__init__(f"notebooks failed, their committed files left as they were: {runs}")


def _only_model(path: Path) -> str | None:
    """The model a notebook must run with whatever is asked, from its metadata; None: any."""
    import nbformat

    return nbformat.read(path, as_version=4).metadata.get("blending", {}).get("only_model")


def _strip_volatile(path: Path) -> None:
    """Drop what differs between two identical runs, so that a rerun leaves the file unchanged,
    and what the pages do not show: library warnings and progress bars on stderr. The parameters
    papermill injected stay in the notebook (they say how it was drawn) but off the page, as the
    parameters cell is."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for holder in (notebook, *notebook.cells):
        for key in _VOLATILE_METADATA:
            holder.metadata.pop(key, None)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if _WIDGET not in o.get("data", {}) and o.get("name") != "stderr"]
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = [*tags, "remove-cell"]
    nbformat.write(notebook, path)


def _notebook_paths(notebooks: Path, only: list[str] | None) -> list[Path]:
    paths = sorted(
        p for p in notebooks.glob("*.ipynb") if not p.name.endswith(_FAILED_SUFFIX) and (only is None or p.stem in only)
    )
    if not paths:
        raise ValueError(f"notebooks: no notebook to run in {notebooks}" + (f" named {only}" if only else ""))
    return paths


def _parameters(path: Path, overrides: dict) -> tuple[dict, dict]:
    """A notebook's default parameters, and those of ``overrides`` that differ from them.

    Only what differs is passed, so that a default run injects nothing.
    """
    import papermill

    defaults = {name: ast.literal_eval(spec["default"]) for name, spec in papermill.inspect_notebook(str(path)).items()}
    return defaults, {k: v for k, v in overrides.items() if k in defaults and v != defaults[k]}


def _fresh_copy(path: Path, destination: Path) -> Path:
    """``path`` without the parameters an earlier run injected: this run's parameters alone count."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    notebook.cells = [c for c in notebook.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    nbformat.write(notebook, destination)
    return destination


def _device_description(device: str | None, dtype: str | None) -> tuple[str, str]:
    """The device and dtype that the notebooks' pipelines get, in words: ("cuda (NVIDIA T4)", "float16")."""
    import torch

    from ..loading import resolve_device

    resolved, resolved_dtype = resolve_device(device, None if dtype is None else getattr(torch, dtype))
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {device} is not available on this machine")
        name = f"cuda ({torch.cuda.get_device_name(resolved)})"
    elif resolved.type == "cpu":
        name = f"cpu ({numerics.numeric_path()})"  # what the kernels run: see pinned_children
    else:
        name = str(resolved)
    return name, str(resolved_dtype).removeprefix("torch.")


def _run_all(paths, model, device, dtype, manifest, failed) -> None:
    """Run each notebook; record it in the manifest and the status, or its failure in ``failed``."""
    import papermill

    for path in paths:
        notebook_model = _only_model(path) or model
        if notebook_model != model:
            logger.info("%s runs with the %s model only, not %s", path, notebook_model, model)
        defaults, parameters = _parameters(path, {"model": notebook_model, "device": device, "dtype": dtype})
        logger.info("running %s %s", path, parameters or "with its defaults")
        failed_run = path.with_name(path.stem + _FAILED_SUFFIX)
        failed_run.unlink(missing_ok=True)  # the failure of an earlier run no longer holds
        fingerprints = path.parent / "fingerprints" / f"{path.stem}.json"
        recorded = fingerprints.read_bytes() if fingerprints.is_file() else None
        with tempfile.TemporaryDirectory() as scratch:
            run = Path(scratch) / path.name
            source = _fresh_copy(path, Path(scratch) / f"source-{path.name}")
            started = time.perf_counter()
            try:
                # cwd stays the notebook's folder, so that its relative output_dir works
                papermill.execute_notebook(
                    str(source),
                    str(run),
                    parameters=parameters,
                    cwd=str(path.parent),
                    progress_bar=False,
                    kernel_name="python3",
                )
            except Exception as error:  # any failure of this notebook; the others still run
                if run.exists():  # papermill writes the run as it goes, up to the failing cell
                    shutil.move(run, failed_run)
                failed[path.stem] = failed_run if failed_run.exists() else None
                if recorded is not None:  # the committed fingerprints go with the committed notebook
                    fingerprints.write_bytes(recorded)
                logger.error("%s failed and was left as it was (its run: %s):\n%s", path, failed[path.stem], error)
                continue
            seconds = time.perf_counter() - started
            _strip_volatile(run)
            shutil.move(run, path)
        status.record_drawn(
            path.parent / status.FILENAME,
            path.stem,
            model=notebook_model,
            device=manifest["device"],
            dtype=manifest["dtype"],
            versions=manifest["versions"],
            pictures=status.pictures_digest(path),
            seconds=seconds,
        )
        figures_dir = path.parent / "figures" / path.stem
        manifest["notebooks"][path.stem] = {
            "model": notebook_model,
            "seconds": round(seconds, 1),
            "parameters": {**defaults, **parameters},
            "figures": sorted(str(p.relative_to(path.parent)) for p in figures_dir.glob("*.*")),
        }


def regenerate(
    model: str = "embedded",
    device: str | None = None,
    dtype: str | None = None,
    notebooks: Path = NOTEBOOKS,
    only: list[str] | None = None,
    keep_other_models: bool = False,
) -> dict:
    """Execute the notebooks in place with the given model; return and write the manifest.

    A notebook replaces its committed file only when its run succeeds. The others still run;
    then the manifest is written (listing the failed ones under ``"failed"``) and
    :class:`NotebooksFailed` is raised. With ``keep_other_models`` (``make book``), a notebook
    that another model drew (Stable Diffusion on a GPU, say) is kept as it is, and the log says so.
    """
    from ..settings import library_versions

    paths = _notebook_paths(notebooks, only)
    if keep_other_models:
        drawn_by = {p: _drawn_by(p) for p in paths if not _only_model(p)}
        for path, other in drawn_by.items():
            if other != model:
                logger.warning(
                    "%s was drawn by %s, not %s: kept as committed (make figures MODEL=%s replaces it)",
                    path,
                    other,
                    model,
                    model,
                )
        paths = [p for p in paths if drawn_by.get(p, model) == model]
    with numerics.pinned_children():
        device_name, dtype_name = _device_description(device, dtype)
    manifest = {
        "model": model,
        "device": device_name,
        "dtype": dtype_name,
        "versions": library_versions(),
        "machine": platform.machine(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "notebooks": {},
    }
    failed: dict[str, Path | None] = {}
    before = os.environ.get(RECORD)
    os.environ[RECORD] = "1"  # the notebooks' kernels record the fingerprints of the pictures they draw
    try:
        with numerics.pinned_children():  # the same bits on every x86-64 CPU with AVX2
            _run_all(paths, model, device, dtype, manifest, failed)
    finally:
        if before is None:
            del os.environ[RECORD]
        else:
            os.environ[RECORD] = before
    if failed:
        manifest["failed"] = {name: None if run is None else str(run) for name, run in failed.items()}
    manifest_path = notebooks / "figures" / "manifest.json"
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    logger.info("wrote %s", manifest_path)
    if failed:
        raise NotebooksFailed(failed)
    return manifest


def _drawn_by(path: Path) -> str:
    """The model that drew a committed notebook: its injected parameters', else its default."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == [
                    "model"
                ]:
                    return ast.literal_eval(node.value)
    return _parameters(path, {})[0].get("model", "embedded")


def _figure_images(path: Path) -> dict:
    """The PNG outputs of a notebook as HxWx3 arrays, named by their figure (else their cell)."""
    import base64
    import io

    import nbformat
    import numpy as np
    from PIL import Image

    images = {}
    for number, cell in enumerate(nbformat.read(path, as_version=4).cells):
        name = cell.metadata.get("mystnb", {}).get("figure", {}).get("name") or f"cell {number}"
        pngs = [o["data"]["image/png"] for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        for k, png in enumerate(pngs):
            image = Image.open(io.BytesIO(base64.b64decode(png))).convert("RGB")
            images[name if len(pngs) == 1 else f"{name} #{k + 1}"] = np.asarray(image)
    return images


def _psnr(committed, regenerated) -> float | None:
    import numpy as np

    if committed.shape != regenerated.shape:
        return None
    mse = float(np.mean((committed.astype(np.float64) - regenerated.astype(np.float64)) ** 2)) / 255**2
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def verify(
    model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    notebooks: Path = NOTEBOOKS,
    only: list[str] | None = None,
) -> list[dict]:
    """Regenerate notebooks in a temporary folder and compare every figure with the committed one.

    Each notebook runs with the model that drew it (or ``model``); the committed files are never
    touched; ``status.json`` records each notebook's result (:mod:`blending.companion.status`). One row per
    figure: its notebook and name, the largest change of a fingerprint cell
    (:mod:`blending.companion.fingerprint`), whether that is within the tolerance, and the PSNR (dB)
    against the committed PNG.
    """
    import papermill

    from ..settings import library_versions
    from .fingerprint import TOLERANCE, cell_means, largest_change

    paths = _notebook_paths(notebooks, only)
    with numerics.pinned_children():
        device_name, _ = _device_description(device, dtype)
    versions = library_versions()
    rows = []
    with tempfile.TemporaryDirectory() as scratch, numerics.pinned_children():
        copy = Path(scratch) / notebooks.name
        shutil.copytree(notebooks, copy, ignore=shutil.ignore_patterns("figures", "*" + _FAILED_SUFFIX))
        for path in paths:
            only_model = _only_model(path)
            committed_by = only_model or _drawn_by(path)
            drawn_by = only_model or model or committed_by
            _, parameters = _parameters(path, {"model": drawn_by, "device": device, "dtype": dtype})
            run = _fresh_copy(path, copy / path.name)
            logger.info("checking %s with %s", path, drawn_by)
            notebook_rows = []
            try:
                papermill.execute_notebook(
                    str(run), str(run), parameters=parameters, cwd=str(copy), progress_bar=False, kernel_name="python3"
                )
            except Exception as error:  # this notebook's figures cannot be compared; the others can
                logger.error("%s failed to run: %s", path, error)
                notebook_rows.append(
                    {
                        "notebook": path.stem,
                        "figure": "(the notebook failed to run)",
                        "change": None,
                        "match": False,
                        "psnr": None,
                    }
                )
            else:
                committed, regenerated = _figure_images(path), _figure_images(run)
                for name in [*committed, *(n for n in regenerated if n not in committed)]:
                    if name not in committed or name not in regenerated:
                        change, psnr = None, None
                    else:
                        change = largest_change(cell_means(committed[name]), regenerated[name])
                        psnr = _psnr(committed[name], regenerated[name])
                    match = change is not None and change <= TOLERANCE
                    notebook_rows.append(
                        {"notebook": path.stem, "figure": name, "change": change, "match": match, "psnr": psnr}
                    )
            rows += notebook_rows
            if drawn_by == committed_by:  # a check with another model checks nothing committed
                status.record_check(
                    notebooks / status.FILENAME,
                    path.stem,
                    figures=len(notebook_rows),
                    differ=[r["figure"] for r in notebook_rows if not r["match"]],
                    device=device_name,
                    versions=versions,
                )
    return rows


def _check_table(rows: list[dict]) -> str:
    lines = [
        "| notebook | figure | fingerprint | largest cell change | PSNR (dB) |",
        "| --- | --- | :---: | ---: | ---: |",
    ]
    for r in rows:
        change = "n/a" if r["change"] is None else f"{r['change']:.4f}"
        psnr = "n/a" if r["psnr"] is None else "identical" if r["psnr"] == float("inf") else f"{r['psnr']:.1f}"
        lines.append(
            f"| {r['notebook']} | {r['figure']} | {'match' if r['match'] else 'DIFFERS'} | {change} | {psnr} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blending.companion.figures", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", help="the model to draw with (default: embedded; with --check, the one that drew each notebook)"
    )
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS)
    parser.add_argument("--only", nargs="+", help="notebook names (without .ipynb) to run")
    parser.add_argument(
        "--keep-other-models", action="store_true", help="keep the notebooks that another model drew, as make book does"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="regenerate into a temporary folder, compare every figure with the committed one and record "
        "the result in status.json",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.check:
            rows = verify(args.model, args.device, args.dtype, args.notebooks, args.only)
        else:
            manifest = regenerate(
                args.model or "embedded", args.device, args.dtype, args.notebooks, args.only, args.keep_other_models
            )
    except ValueError as error:  # bad arguments, such as --only naming no notebook
        print(f"python -m blending.companion.figures: error: {error}", file=sys.stderr)
        return 2
    except NotebooksFailed as error:
        logger.error("%s", error)
        return 1
    if args.check:
        sys.stdout.write(_check_table(rows))  # the command prints the table
        differ = [f"{r['notebook']}: {r['figure']}" for r in rows if not r["match"]]
        if differ:
            print(
                f"{len(differ)} of {len(rows)} figures differ from the committed ones: {'; '.join(differ)}",
                file=sys.stderr,
            )
            return 1
        print(f"all {len(rows)} figures match the committed ones", file=sys.stderr)
        return 0
    for name, entry in manifest["notebooks"].items():
        logger.info("%s: %s s, %d figures", name, entry["seconds"], len(entry["figures"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
