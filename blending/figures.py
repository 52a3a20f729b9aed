"""Regenerate every figure: run each notebook with papermill, then write a manifest.

``python -m blending.figures`` runs the notebooks in ``notebooks/`` in place with the embedded
model on the CPU; ``--model CompVis/stable-diffusion-v1-4 --device cuda`` draws them with the
paper's model. Each notebook writes its figures as PNGs under ``notebooks/figures/<notebook>/``;
``notebooks/figures/manifest.json`` records the model, device, library versions, each notebook's
parameters and its seconds.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import platform
import sys
import time
from pathlib import Path

__all__ = ["main", "regenerate"]

logger = logging.getLogger(__name__)

NOTEBOOKS = Path("notebooks")
# Execution details that change on every run (the manifest keeps the timings instead), and the
# state of live widgets, which has random ids and means nothing without a kernel.
_VOLATILE_METADATA = ("papermill", "execution", "widgets")
_WIDGET = "application/vnd.jupyter.widget-view+json"


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
    """Execute the notebooks in place with the given model; return and write the manifest."""
    import papermill

    from .pipeline import library_versions

    overrides = {"model": model, "device": device, "dtype": dtype}
    paths = sorted(p for p in notebooks.glob("*.ipynb") if only is None or p.stem in only)
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
    for path in paths:
        defaults = {
            name: ast.literal_eval(spec["default"]) for name, spec in papermill.inspect_notebook(str(path)).items()
        }
        # pass only what differs from the notebook's defaults, so a default run injects nothing
        parameters = {k: v for k, v in overrides.items() if k in defaults and v != defaults[k]}
        logger.info("running %s %s", path, parameters or "with its defaults")
        started = time.perf_counter()
        papermill.execute_notebook(
            str(path), str(path), parameters=parameters, cwd=str(path.parent), progress_bar=False, kernel_name="python3"
        )
        seconds = time.perf_counter() - started
        _strip_volatile(path)
        figures_dir = path.parent / "figures" / path.stem
        manifest["notebooks"][path.stem] = {
            "seconds": round(seconds, 1),
            "parameters": {**defaults, **parameters},
            "figures": sorted(str(p.relative_to(path.parent)) for p in figures_dir.glob("*.*")),
        }
    manifest_path = notebooks / "figures" / "manifest.json"
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    logger.info("wrote %s", manifest_path)
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
    manifest = regenerate(args.model, args.device, args.dtype, args.notebooks, args.only)
    for name, entry in manifest["notebooks"].items():
        logger.info("%s: %s s, %d figures", name, entry["seconds"], len(entry["figures"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
