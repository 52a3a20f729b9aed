"""A controlled world for blending: procedural pictures, a small trained model, attribute readers.

See :mod:`blending.toy.world` (the pictures), :mod:`blending.toy.train` (the model, trained with
``python -m blending.toy.train``), :mod:`blending.toy.readers`, :mod:`blending.toy.study` and
:mod:`blending.toy.clip` (the CLIP that scores blends, :mod:`blending.scores.clip`, trained with
``python -m blending.toy.clip``).
"""

import json
from pathlib import Path

__all__ = ["portable", "training_metrics"]


def portable(value) -> str:
    """A training setting as text for a metrics file: a path inside the repository relative to
    it, another absolute path by its name alone, so that no file records this machine's layout."""
    if isinstance(value, Path):
        root = Path(__file__).resolve().parents[2]
        resolved = value.resolve()
        if resolved.is_relative_to(root):
            return str(resolved.relative_to(root))
        return value.name if value.is_absolute() else str(value)
    return str(value)


def training_metrics() -> dict:
    """What the training run of the shipped embedded model measured."""
    from ..loading import EMBEDDED_PATH

    return json.loads((EMBEDDED_PATH / "training_metrics.json").read_text())
