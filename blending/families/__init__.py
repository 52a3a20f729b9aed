"""Model families: one module per family, each a :class:`~blending.families.base.Family`.

- :mod:`~blending.families.stable_diffusion`: SD 1.x/2.x;
- :mod:`~blending.families.sdxl`: SDXL (both on the U-Net's shared code, :mod:`~blending.families.unet`);
- :mod:`~blending.families.sd3`: SD3 and SD3.5;
- :mod:`~blending.families.flux`: FLUX.1 dev and schnell.

Adding a family is one new module here, registered in :data:`FAMILIES`, plus its tests.
"""

from __future__ import annotations

from ..errors import InputError
from .base import Family
from .flux import Flux
from .sd3 import StableDiffusion3
from .sdxl import StableDiffusionXL
from .stable_diffusion import StableDiffusion

__all__ = ["FAMILIES", "SUPPORTED", "Family", "family_of"]

#: What :func:`family_of` accepts, in the words of its error.
SUPPORTED = (
    "a StableDiffusionPipeline (Stable Diffusion 1.x/2.x), StableDiffusionXLPipeline (SDXL), "
    "StableDiffusion3Pipeline (SD3) or FluxPipeline (FLUX.1), text to image; img2img and inpainting pipelines "
    "are not supported"
)

#: The families :func:`blending.blend` runs.
FAMILIES: tuple[Family, ...] = (StableDiffusion(), StableDiffusionXL(), StableDiffusion3(), Flux())


def family_of(pipe) -> Family:
    """The family of ``pipe``; an :class:`~blending.InputError` naming ``pipe`` and what is supported otherwise."""
    import diffusers

    for family in FAMILIES:
        if isinstance(pipe, getattr(diffusers, family.pipeline_class)):
            return family
    raise InputError(f"pipe must be {SUPPORTED}; got {type(pipe).__name__}")
