"""What a comparison is: its settings (:class:`BlendSettings`), their checks, and its result (:class:`BlendResult`).

Nothing here needs a model: the command line and experiment files check settings before one loads.
"""

from __future__ import annotations

import inspect
import numbers
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import InputError
from .methods import METHODS, UNET_POOLED

__all__ = [
    "MAX_SEED",
    "OUTPUT_TYPES",
    "BlendResult",
    "BlendSettings",
    "check_seed",
    "check_settings",
    "library_versions",
]

OUTPUT_TYPES = ("pil", "np", "pt", "latent")
#: The largest seed, since torch.Generator.manual_seed takes unsigned 64-bit seeds.
MAX_SEED = 2**64 - 1


@dataclass
class BlendResult:
    """The images of one :func:`blend` call, all grown from the same initial noise.

    ``prompt_1`` and ``prompt_2`` are the plain images of the two prompts; ``blends`` maps each
    method name to its blend, in the order asked; ``settings`` holds every parameter that shaped
    the images, with the model id, the library versions and the device. Images are of
    ``settings["output_type"]``: a PIL image, an HxWx3 float array in [0, 1], a 3xHxW float
    tensor in [0, 1], or a CxhXw latent tensor.
    """

    prompt_1: Any
    prompt_2: Any
    blends: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the images."""
    import diffusers
    import torch
    import transformers

    from . import __version__

    return {
        "blending": __version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


@dataclass(frozen=True)
class BlendSettings:
    """What shapes a comparison besides its initial noise: the keyword arguments of :func:`blend`
    and :func:`blend_seeds` (and of a sweep), in one place.

    Attributes:
        prompt_1, prompt_2: the two concepts, e.g. ``"lion"`` and ``"cat"``.
        methods: names from :data:`blending.METHODS`, in the order wanted in the result; ``None``
            (default): every method the pipeline's family defines (SD3 and FLUX.1: all but UNET).
        ratio: the weight of prompt 2 for every method, in [0, 1]. 0 gives exactly prompt 1's
            image, 1 exactly prompt 2's; 0.5 is the paper's setting.
        num_inference_steps, height, width, negative_prompt: as in diffusers' pipelines; the
            paper uses 25 steps and 512x512 (SDXL: 1024x1024).
        guidance_scale: what it means depends on the model family. SD 1.x/2.x, SDXL and SD3:
            classifier-free guidance, off at 1 or below; ``None`` is the paper's 7.5 (SD3: 7.0,
            as diffusers). FLUX.1 dev: the distilled guidance its transformer takes as an input,
            with no unconditional rows; ``None`` is diffusers' 3.5. FLUX.1 schnell takes no
            guidance and refuses a value. The results' settings record the value used and its
            meaning (``guidance``: ``"classifier-free"``, ``"distilled"`` or ``"none"``).
        switch_step: SWITCH's number of prompt-1 steps; defaults to
            ``round(num_inference_steps * (1 - ratio))``.
        unet_pooled: SDXL only. UNET splits the token states between the U-Net's encoder and
            decoder, but SDXL's pooled embedding enters every block through the time embedding,
            so it cannot be split: ``"ratio"`` (default) interpolates it at ``ratio``, so that
            ratios 0 and 1 stay exactly the plain images and 0.5 averages the two prompts';
            ``"prompt_1"`` or ``"prompt_2"`` gives it one prompt's at every ratio.
        output_type: ``"pil"``, ``"np"``, ``"pt"`` or ``"latent"``, as in diffusers.
        max_batch_size: the most images denoised together in one U-Net or transformer call,
            before classifier-free guidance doubles the rows (the VAE decodes one image at a
            time). ``None``: every image of the call at once. Smaller batches run one after the other and give the same images
            (to float tolerance) in less memory.
        generator_device: where the ``torch.Generator`` of each seed lives, and so which random
            numbers a seed gives: it draws the initial noise and the per-step noise of stochastic
            schedulers. ``"cpu"`` (default) gives the same images on every machine, as diffusers
            recommends; ``"cuda"`` draws the noise as the paper's authors did, with
            ``torch.Generator("cuda").manual_seed(seed)``. Other than ``"cpu"``, it must be the
            pipeline's device.
    """

    prompt_1: str
    prompt_2: str
    methods: tuple[str, ...] | None = None
    ratio: float = 0.5
    num_inference_steps: int = 25
    guidance_scale: float | None = None
    height: int | None = None
    width: int | None = None
    negative_prompt: str | None = None
    switch_step: int | None = None
    unet_pooled: str = "ratio"
    output_type: str = "pil"
    max_batch_size: int | None = None
    generator_device: str = "cpu"

    @property
    def images_per_comparison(self) -> int:
        """Both plain images and one blend per method."""
        return 2 + len(self.methods)


# The settings that blend and blend_seeds take as keywords (the first four are positional).
KEYWORD_SETTINGS = tuple(f for f in fields(BlendSettings) if f.name not in ("prompt_1", "prompt_2", "methods", "ratio"))


def settings_from_call(caller: str, prompt_1, prompt_2, methods, ratio, keywords: dict) -> BlendSettings:
    """The :class:`BlendSettings` of a call; a ``TypeError`` for a keyword that is not a setting."""
    names = {f.name for f in KEYWORD_SETTINGS}
    unknown = [name for name in keywords if name not in names]
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
    return BlendSettings(prompt_1, prompt_2, methods, ratio, **keywords)


def with_settings_in_signature(function):
    """Show the keyword settings in ``function``'s signature (``help``, IDEs, Sphinx) in place of
    its ``**settings``: they are written once, in :class:`BlendSettings`."""
    signature = inspect.signature(function)
    parameters = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    parameters += [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
        for f in KEYWORD_SETTINGS
    ]
    function.__signature__ = signature.replace(parameters=parameters)
    return function


def check_settings(settings: BlendSettings) -> None:
    """An :class:`~blending.InputError` naming the setting for anything that no pipeline could honour: checked
    before a model is loaded (the command line does), and again by :func:`check_inputs`."""
    s = settings
    for name, prompt in (("prompt_1", s.prompt_1), ("prompt_2", s.prompt_2)):
        if not isinstance(prompt, str):
            raise InputError(f"{name} must be a string, got {type(prompt).__name__}")
    if s.negative_prompt is not None and not isinstance(s.negative_prompt, str):
        raise InputError(f"negative_prompt must be a string or None, got {type(s.negative_prompt).__name__}")
    # None: the family's methods, all of which these checks allow
    methods = tuple(METHODS) if s.methods is None else s.methods
    if isinstance(methods, str) or not isinstance(methods, Sequence):
        raise InputError(f"methods must be a sequence of method names such as ('switch',), got {methods!r}")
    if len(methods) == 0:
        raise InputError(f"methods must name at least one of {list(METHODS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"methods: unknown method {unknown[0]!r}; choose from {list(METHODS)}")
    if len(set(methods)) != len(methods):
        raise InputError(f"methods must not repeat a method, got {list(methods)}")
    if isinstance(s.ratio, bool) or not isinstance(s.ratio, numbers.Real) or not 0 <= s.ratio <= 1:
        raise InputError(f"ratio must be a number in [0, 1], got {s.ratio!r}")
    steps = s.num_inference_steps
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise InputError(f"num_inference_steps must be an integer >= 1, got {steps!r}")
    if s.guidance_scale is not None and (
        isinstance(s.guidance_scale, bool) or not isinstance(s.guidance_scale, numbers.Real)
    ):
        raise InputError(f"guidance_scale must be a number or None, got {s.guidance_scale!r}")
    if s.switch_step is not None:
        if "switch" not in methods:
            raise InputError("switch_step is only used by the 'switch' method, which methods does not include")
        if (
            isinstance(s.switch_step, bool)
            or not isinstance(s.switch_step, numbers.Integral)
            or not 0 <= s.switch_step <= steps
        ):
            raise InputError(
                f"switch_step must be an integer in [0, num_inference_steps={steps}], got {s.switch_step!r}"
            )
    if s.unet_pooled not in UNET_POOLED:
        raise InputError(f"unet_pooled must be one of {list(UNET_POOLED)}, got {s.unet_pooled!r}")
    if s.unet_pooled != "ratio" and "unet" not in methods:
        raise InputError("unet_pooled is only used by the 'unet' method, which methods does not include")
    for name, size in (("height", s.height), ("width", s.width)):
        if size is not None and (isinstance(size, bool) or not isinstance(size, numbers.Integral) or size <= 0):
            raise InputError(f"{name} must be a positive integer, got {size!r}")
    if s.output_type not in OUTPUT_TYPES:
        raise InputError(f"output_type must be one of {list(OUTPUT_TYPES)}, got {s.output_type!r}")
    if s.max_batch_size is not None and (
        isinstance(s.max_batch_size, bool) or not isinstance(s.max_batch_size, numbers.Integral) or s.max_batch_size < 1
    ):
        raise InputError(f"max_batch_size must be an integer >= 1 or None, got {s.max_batch_size!r}")
    from .loading import check_device  # here, so that importing this module does not import torch

    check_device(s.generator_device, "generator_device")


def check_seed(seed) -> None:
    """An :class:`~blending.InputError` naming ``seed`` unless it is a seed ``torch.Generator`` takes."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed must be an integer in [0, 2**64 - 1], got {seed!r}")
