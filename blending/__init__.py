"""Concept blending with diffusion models.

The four methods of Olearo, Longari, Melzi, Raganato and Peñaloza, "How to Blend Concepts in
Diffusion Models" (KMG@ECCV 2024, arXiv:2407.14280), on stock diffusers::

    import blending
    pipe = blending.load_pipeline("embedded")          # or "CompVis/stable-diffusion-v1-4"
    result = blending.blend(pipe, "lion", "cat", seed=21)
    result.blends["switch"]
"""

__version__ = "0.1.0"

import importlib

# Imported on first use, so that `python -m blending` answers bad arguments at once.
_EXPORTS = {
    "METHODS": "methods",
    "PAPER_MODEL": "loading",
    "BlendResult": "settings",
    "BlendSettings": "settings",
    "InputError": "errors",
    "ModelUnavailableError": "loading",
    "blend": "sampling",
    "blend_seeds": "sampling",
    "load_pipeline": "loading",
}

#: The ten seeds of the authors' experiments.
PAPER_SEEDS = (21, 314, 561, 41041, 9746347772161, 1007, 11051999, 27092000, 20071969, 4101957)

__all__ = [*_EXPORTS, "PAPER_SEEDS"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])
