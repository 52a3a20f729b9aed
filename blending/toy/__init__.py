"""A controlled world for blending: procedural pictures, a small trained model, attribute readers.

See :mod:`blending.toy.world` (the pictures), :mod:`blending.toy.train` (the model, trained with
``python -m blending.toy.train``), :mod:`blending.toy.readers`, :mod:`blending.toy.study` and
:mod:`blending.toy.clip` (the CLIP that scores blends, :mod:`blending.scores`, trained with
``python -m blending.toy.clip``).
"""

import json

__all__ = ["training_metrics"]


def training_metrics() -> dict:
    """What the training run of the shipped embedded model measured."""
    from ..loading import EMBEDDED_PATH

    return json.loads((EMBEDDED_PATH / "training_metrics.json").read_text())
