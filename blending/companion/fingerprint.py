"""Fingerprints of pictures, compared with a tolerance: float noise passes, a changed picture fails.

A picture's fingerprint is its 8-bit pixels averaged over an 8x8 grid of cells per colour channel
(``cell_means``). Another thread count, BLAS or batch order moves a cell mean by a few thousandths
(measured in ``tests/test_fingerprint.py``), so fingerprints are compared with a tolerance
(:data:`TOLERANCE`) on the largest cell change, never as exact text: any exact rounding of the
means has a boundary that noise can cross. A new seed, ratio or method, a flip or a shift of a few
pixels moves cells by tenths.

Each chapter keeps the fingerprints of the pictures it shows in ``notebooks/fingerprints/`` and
prints, in a cell that nbval checks, one line that is the same whenever every picture matches
(see :func:`check`); when pictures differ, the line names them, and nbval fails.
``python -m blending.companion.figures`` records the fingerprints afresh (it sets :data:`RECORD`), with the
numeric path that drew them (:func:`blending.companion.numerics.numeric_path`), so that a mismatch says
where the pictures were drawn and where they were checked. With :data:`REPORT` naming a file, every
check also appends each picture's largest cell change to it (one JSON object per line): how
``python -m blending.companion.portability`` measures the drift between CPUs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GRID", "RECORD", "REPORT", "TOLERANCE", "cell_means", "largest_change", "match_fingerprints"]

#: Cells per side of the grid.
GRID = 8
#: The largest change of a cell mean (in [0, 1]) that still counts as the same picture.
TOLERANCE = 0.02
#: The environment variable under which :func:`check` records instead of comparing.
RECORD = "BLENDING_RECORD_FINGERPRINTS"
#: The environment variable naming a file to which :func:`check` appends every picture's change.
REPORT = "BLENDING_FINGERPRINT_REPORT"


def cell_means(image) -> np.ndarray:
    """The picture's 8-bit pixels averaged over each cell of a GRID x GRID grid: GRID x GRID x 3 in [0, 1].

    ``image`` is any image :func:`blending.plot.image_array` reads.
    """
    from ..plot import image_array

    pixels = image_array(image)
    if pixels.dtype != np.uint8:  # as a PNG stores it
        pixels = np.clip(np.round(np.asarray(pixels, dtype=np.float64) * 255), 0, 255)
    pixels = np.asarray(pixels, dtype=np.float64) / 255
    height, width, _ = pixels.shape
    if height < GRID or width < GRID:
        raise ValueError(f"image must be at least {GRID}x{GRID} pixels, got {width}x{height}")
    rows = np.linspace(0, height, GRID + 1).astype(int)
    columns = np.linspace(0, width, GRID + 1).astype(int)
    return np.array(
        [
            [pixels[rows[i] : rows[i + 1], columns[j] : columns[j + 1]].mean(axis=(0, 1)) for j in range(GRID)]
            for i in range(GRID)
        ]
    )


def largest_change(reference, image) -> float:
    """The largest difference between a recorded fingerprint (cell means) and a picture's."""
    return float(np.abs(np.asarray(reference, dtype=np.float64) - cell_means(image)).max())


def match_fingerprints(images: Mapping[str, Any], path: str | os.PathLike) -> str:
    """One line saying whether ``images`` (named ``figure/panel``) match the fingerprints at ``path``.

    With the environment variable :data:`RECORD` set to 1, the fingerprints are recorded at
    ``path`` first, so the line is the one a matching check prints.
    """
    from .numerics import numeric_path

    path = Path(path)
    if os.environ.get(RECORD) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        recorded = {name: np.round(cell_means(image), 4).tolist() for name, image in images.items()}
        record = {"grid": GRID, "numeric_path": numeric_path(), "cell_means": recorded}
        path.write_text(json.dumps(record, indent=None) + "\n")
    if not path.is_file():
        return f"no fingerprints recorded at {path}: run python -m blending.companion.figures"
    stored = json.loads(path.read_text())
    recorded = stored["cell_means"]
    changes = {name: largest_change(recorded[name], image) for name, image in images.items() if name in recorded}
    if os.environ.get(REPORT):
        with open(os.environ[REPORT], "a") as report:
            for name, change in changes.items():
                report.write(json.dumps({"fingerprints": path.stem, "picture": name, "change": change}) + "\n")
    differ = [f"{name} (new)" for name in images if name not in recorded]
    differ += [f"{name} ({change:.2f})" for name, change in changes.items() if change > TOLERANCE]
    differ += [f"{name} (missing)" for name in recorded if name not in images]
    if differ:
        drawn, here = stored.get("numeric_path", "an unrecorded numeric path"), numeric_path()
        where = f"drawn and checked on {here}" if drawn == here else f"drawn on {drawn}, checked on {here}"
        return (
            f"{len(differ)} of {len(recorded)} pictures differ from their recorded fingerprints "
            f"(largest cell change): {', '.join(differ)}; {where}; python -m blending.companion.figures redraws them"
        )
    return f"{len(images)} pictures match their recorded fingerprints (largest cell change <= {TOLERANCE})"
