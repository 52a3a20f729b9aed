"""Regenerate every figure: run each notebook with papermill, then write a manifest.

``python -m blending.figures`` runs the notebooks in ``notebooks/`` in place with the embedded
model on the CPU; ``--model CompVis/stable-diffusion-v1-4 --device cuda`` draws them with the
paper's model. Each notebook writes its figures as PNGs under ``notebooks/figures/<notebook>/``;
``notebooks/figures/manifest.json`` records the model, device, library versions, each notebook's
model, parameters and seconds.

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
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["NotebooksFailed", "main", "regenerate"]

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
    """Drop what differs between two identical runs, so that a rerun leaves the file unchanged."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    for holder in (notebook, *notebook.cells):
        for key in _VOLATILE_METADATA:
            holder.metadata.pop(key, None)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if _WIDGET not in o.get("data", {})]
    nbformat.write(notebook, path)


def regenerate(
    model: str = "embedded",
    device: str | None = None,
    dtype: str | None = None,
    notebooks: Path = NOTEBOOKS,
    only: list[str] | None = None,
) -> dict:
    """Execute the notebooks in place with the given model; return and write the manifest.

    A notebook replaces its committed file only when its run succeeds. The others still run;
    then the manifest is written (listing the failed ones under ``"failed"``) and
    :class:`NotebooksFailed` is raised.
    """
    import papermill

    from .pipeline import library_versions

    paths = sorted(
        p for p in notebooks.glob("*.ipynb")
        if not p.name.endswith(_FAILED_SUFFIX) and (only is None or p.stem in only)
    )  # fmt: skip
    if not paths:
        raise ValueError(f"notebooks: no notebook to run in {notebooks}")
    manifest = {
        "model": model,
        "device": device or "auto",
        "dtype": dtype or "auto",
        "versions": library_versions(),
        "machine": platform.machine(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "notebooks": {},
    }
    failed: dict[str, Path | None] = {}
    for path in paths:
        defaults = {
            name: ast.literal_eval(spec["default"]) for name, spec in papermill.inspect_notebook(str(path)).items()
        }
        notebook_model = _only_model(path) or model
        if notebook_model != model:
            logger.info("%s runs with the %s model only, not %s", path, notebook_model, model)
        overrides = {"model": notebook_model, "device": device, "dtype": dtype}
        # pass only what differs from the notebook's defaults, so a default run injects nothing
        parameters = {k: v for k, v in overrides.items() if k in defaults and v != defaults[k]}
        logger.info("running %s %s", path, parameters or "with its defaults")
        failed_run = path.with_name(path.stem + _FAILED_SUFFIX)
        failed_run.unlink(missing_ok=True)  # the failure of an earlier run no longer holds
        with tempfile.TemporaryDirectory() as scratch:
            run = Path(scratch) / path.name
            started = time.perf_counter()
            try:
                # cwd stays the notebook's folder, so that its relative output_dir works
                papermill.execute_notebook(
                    str(path), str(run), parameters=parameters, cwd=str(path.parent), progress_bar=False,
                    kernel_name="python3",
                )  # fmt: skip
            except Exception as error:  # any failure of this notebook; the others still run
                if run.exists():  # papermill writes the run as it goes, up to the failing cell
                    shutil.move(run, failed_run)
                failed[path.stem] = failed_run if failed_run.exists() else None
                logger.error("%s failed and was left as it was (its run: %s):\n%s", path, failed[path.stem], error)
                continue
            seconds = time.perf_counter() - started
            _strip_volatile(run)
            shutil.move(run, path)
        figures_dir = path.parent / "figures" / path.stem
        manifest["notebooks"][path.stem] = {
            "model": notebook_model,
            "seconds": round(seconds, 1),
            "parameters": {**defaults, **parameters},
            "figures": sorted(str(p.relative_to(path.parent)) for p in figures_dir.glob("*.*")),
        }
    if failed:
        manifest["failed"] = {name: None if run is None else str(run) for name, run in failed.items()}
    manifest_path = notebooks / "figures" / "manifest.json"
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    logger.info("wrote %s", manifest_path)
    if failed:
        raise NotebooksFailed(failed)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blending.figures", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    parser.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOKS)
    parser.add_argument("--only", nargs="+", help="notebook names (without .ipynb) to run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        manifest = regenerate(args.model, args.device, args.dtype, args.notebooks, args.only)
    except NotebooksFailed as error:
        logger.error("%s", error)
        return 1
    for name, entry in manifest["notebooks"].items():
        logger.info("%s: %s s, %d figures", name, entry["seconds"], len(entry["figures"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
