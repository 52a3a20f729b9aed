"""``blend``: both plain images and every requested blend, denoised together as one batch."""

from __future__ import annotations

import inspect
import logging
import numbers
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import retrieve_timesteps
from tqdm.auto import tqdm

from .attention import cross_attention_layout, layer_replacements, row_conditioning
from .errors import InputError
from .families import SUPPORTED, Conditioning, Family, family_of
from .loading import check_device
from .methods import METHODS, UNET_POOLED, CrossAttentionLayout, Schedule, default_switch_step, plain

__all__ = [
    "MAX_SEED",
    "BlendResult",
    "BlendSettings",
    "OUTPUT_TYPES",
    "blend",
    "blend_seeds",
    "check_inputs",
    "check_pipeline",
    "check_settings",
    "library_versions",
]

logger = logging.getLogger(__name__)

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
        methods: names from :data:`blending.METHODS`, in the order wanted in the result.
        ratio: the weight of prompt 2 for every method, in [0, 1]. 0 gives exactly prompt 1's
            image, 1 exactly prompt 2's; 0.5 is the paper's setting.
        num_inference_steps, guidance_scale, height, width, negative_prompt: as in diffusers'
            pipelines; the paper uses 25 steps, guidance 7.5 and 512x512 (SDXL: 1024x1024).
        switch_step: SWITCH's number of prompt-1 steps; defaults to
            ``round(num_inference_steps * (1 - ratio))``.
        unet_pooled: SDXL only. UNET splits the token states between the U-Net's encoder and
            decoder, but SDXL's pooled embedding enters every block through the time embedding,
            so it cannot be split: ``"ratio"`` (default) interpolates it at ``ratio``, so that
            ratios 0 and 1 stay exactly the plain images and 0.5 averages the two prompts';
            ``"prompt_1"`` or ``"prompt_2"`` gives it one prompt's at every ratio.
        output_type: ``"pil"``, ``"np"``, ``"pt"`` or ``"latent"``, as in diffusers.
        max_batch_size: the most images denoised together in one U-Net call (and decoded in one
            VAE call), before classifier-free guidance doubles the rows. ``None``: every image of
            the call at once. Smaller batches run one after the other and give the same images
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
    methods: tuple[str, ...] = tuple(METHODS)
    ratio: float = 0.5
    num_inference_steps: int = 25
    guidance_scale: float = 7.5
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
_KEYWORD_SETTINGS = tuple(
    f for f in fields(BlendSettings) if f.name not in ("prompt_1", "prompt_2", "methods", "ratio")
)


def _settings(caller: str, prompt_1, prompt_2, methods, ratio, keywords: dict) -> BlendSettings:
    """The :class:`BlendSettings` of a call; a ``TypeError`` for a keyword that is not a setting."""
    names = {f.name for f in _KEYWORD_SETTINGS}
    unknown = [name for name in keywords if name not in names]
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
    return BlendSettings(prompt_1, prompt_2, methods, ratio, **keywords)


def _with_settings_in_signature(function):
    """Show the keyword settings in ``function``'s signature (``help``, IDEs, Sphinx) in place of
    its ``**settings``: they are written once, in :class:`BlendSettings`."""
    signature = inspect.signature(function)
    parameters = [p for p in signature.parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
    parameters += [
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
        for f in _KEYWORD_SETTINGS
    ]
    function.__signature__ = signature.replace(parameters=parameters)
    return function


def check_pipeline(pipe) -> Family:
    """The family of ``pipe``; an :class:`~blending.InputError` naming ``pipe`` unless the methods can run on it.

    Supported: ``StableDiffusionPipeline`` (SD 1.x and 2.x) and ``StableDiffusionXLPipeline``
    (SDXL base), text to image, epsilon or v prediction, with a scheduler that evaluates the
    U-Net once per step. SDXL's refiner (an img2img pipeline) is not supported.
    """
    family = family_of(pipe)
    unet = pipe.unet.config
    if unet.in_channels != pipe.vae.config.latent_channels:
        raise InputError(
            f"pipe: its U-Net takes {unet.in_channels} input channels, not the VAE's {pipe.vae.config.latent_channels} "
            f"(an inpainting U-Net?); blending needs {SUPPORTED}"
        )
    if getattr(unet, "addition_embed_type", None) != family.addition_embed_type:
        raise InputError(
            f"pipe: its U-Net's addition_embed_type is {getattr(unet, 'addition_embed_type', None)!r}, "
            f"{family.name} needs {family.addition_embed_type!r}; blending needs {SUPPORTED}"
        )
    for key in ("class_embed_type", "time_cond_proj_dim"):
        if getattr(unet, key, None) is not None:
            raise InputError(
                f"pipe: its U-Net expects conditioning besides the text ({key}={getattr(unet, key)!r}); "
                f"blending needs {SUPPORTED}"
            )
    scheduler = type(pipe.scheduler).__name__
    if getattr(pipe.scheduler, "order", 1) != 1:
        raise InputError(
            f"pipe: its scheduler {scheduler} evaluates the U-Net {pipe.scheduler.order} times per step; blending "
            "needs one evaluation per step (UniPC, DDIM, PNDM, LMS, Euler, DPM-Solver++, ...)"
        )
    return family


def check_settings(settings: BlendSettings) -> None:
    """An :class:`~blending.InputError` naming the setting for anything that no pipeline could honour: checked
    before a model is loaded (the command line does), and again by :func:`check_inputs`."""
    s = settings
    for name, prompt in (("prompt_1", s.prompt_1), ("prompt_2", s.prompt_2)):
        if not isinstance(prompt, str):
            raise InputError(f"{name} must be a string, got {type(prompt).__name__}")
    if s.negative_prompt is not None and not isinstance(s.negative_prompt, str):
        raise InputError(f"negative_prompt must be a string or None, got {type(s.negative_prompt).__name__}")
    if isinstance(s.methods, str) or not isinstance(s.methods, Sequence):
        raise InputError(f"methods must be a sequence of method names such as ('switch',), got {s.methods!r}")
    if len(s.methods) == 0:
        raise InputError(f"methods must name at least one of {list(METHODS)}")
    unknown = [m for m in s.methods if m not in METHODS]
    if unknown:
        raise InputError(f"methods: unknown method {unknown[0]!r}; choose from {list(METHODS)}")
    if len(set(s.methods)) != len(s.methods):
        raise InputError(f"methods must not repeat a method, got {list(s.methods)}")
    if isinstance(s.ratio, bool) or not isinstance(s.ratio, numbers.Real) or not 0 <= s.ratio <= 1:
        raise InputError(f"ratio must be a number in [0, 1], got {s.ratio!r}")
    steps = s.num_inference_steps
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise InputError(f"num_inference_steps must be an integer >= 1, got {steps!r}")
    if isinstance(s.guidance_scale, bool) or not isinstance(s.guidance_scale, numbers.Real):
        raise InputError(f"guidance_scale must be a number, got {s.guidance_scale!r}")
    if s.switch_step is not None:
        if "switch" not in s.methods:
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
    if s.unet_pooled != "ratio" and "unet" not in s.methods:
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
    check_device(s.generator_device, "generator_device")


def _resolved(device: torch.device) -> torch.device:
    """``device`` with its index: ``cuda`` is the current CUDA device."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    if device.type == "mps" and device.index is None:
        return torch.device("mps", 0)
    return device


def _check_generator_placement(pipe, generator_device: str, generator) -> None:
    """An :class:`InputError` for a generator that cannot draw the noise of ``pipe``'s latents.

    diffusers draws with a CPU generator on the CPU and moves the noise; any other generator must
    be on the latents' device.
    """
    execution = _resolved(torch.device(pipe._execution_device))
    if generator is not None:
        own = _resolved(generator.device)
        if str(generator_device) != "cpu" and _resolved(torch.device(generator_device)) != own:
            raise InputError(
                f"generator_device: {generator_device!r} disagrees with the generator's device {str(own)!r}; "
                "pass one of them"
            )
        if own.type != "cpu" and own != execution:
            raise InputError(
                f"generator: it is on {str(own)!r}, the pipeline on {str(execution)!r}; a generator draws the "
                "noise on the CPU or on the pipeline's device"
            )
        return
    device = _resolved(torch.device(generator_device))
    if device.type != "cpu" and device != execution:
        raise InputError(
            f"generator_device: {generator_device!r} is not the pipeline's device {str(execution)!r}; "
            "the noise is drawn on the CPU or on the pipeline's device"
        )


def check_inputs(pipe, settings: BlendSettings, seed, generator, latents, callback_on_step_end=None) -> Family:
    """The family of ``pipe``; an :class:`~blending.InputError` naming the parameter for any input :func:`blend`
    cannot honour."""
    family = check_pipeline(pipe)
    check_settings(settings)
    s = settings
    if s.unet_pooled != "ratio" and not family.has_pooled_embedding:
        raise InputError(f"unet_pooled: {family.name} has no pooled embedding (only SDXL has)")
    for name, size in (("height", s.height), ("width", s.width)):
        if size is not None and size % pipe.vae_scale_factor:
            raise InputError(f"{name} must be a positive multiple of {pipe.vae_scale_factor}, got {size!r}")
    if callback_on_step_end is not None and s.max_batch_size is not None and s.max_batch_size < s.images_per_comparison:
        raise InputError(
            f"max_batch_size must be at least {s.images_per_comparison} (the images of one comparison) when "
            f"callback_on_step_end is given, which sees the whole comparison at every step; got {s.max_batch_size}"
        )
    if seed is not None and generator is not None:
        raise InputError("seed and generator are alternatives: pass one of them, not both")
    if seed is not None:
        _check_seed(seed)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InputError(f"generator must be one torch.Generator, got {type(generator).__name__}")
    _check_generator_placement(pipe, s.generator_device, generator)
    if latents is not None:
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        expected = (
            1,
            pipe.unet.config.in_channels,
            (s.height or size) // pipe.vae_scale_factor,
            (s.width or size) // pipe.vae_scale_factor,
        )
        if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != expected:
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise InputError(f"latents must be a tensor of shape {expected}, got {shape}")
    # PNDM evaluates its first step twice; any other extra evaluation has no step to follow
    steps = s.num_inference_steps
    num_calls = len(retrieve_timesteps(pipe.scheduler, steps, pipe._execution_device)[0])
    if num_calls not in (steps, steps + 1):
        raise InputError(
            f"pipe: its scheduler {type(pipe.scheduler).__name__} makes {num_calls} U-Net calls for {steps} steps; "
            "blending needs one call per step"
        )
    return family


def _check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed must be an integer in [0, 2**64 - 1], got {seed!r}")


@_with_settings_in_signature
@torch.no_grad()
def blend(
    pipe,
    prompt_1: str,
    prompt_2: str,
    methods: Sequence[str] = tuple(METHODS),
    ratio: float = 0.5,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    latents: torch.Tensor | None = None,
    progress: bool = True,
    callback_on_step_end: Callable[[Any, int, torch.Tensor, dict], dict] | None = None,
    **settings,
) -> BlendResult:
    """Blend two prompts with each of ``methods``, beside the two plain images.

    Args:
        pipe: a ``StableDiffusionPipeline`` (SD 1.x/2.x) or ``StableDiffusionXLPipeline`` (SDXL)
            (see :func:`blending.load_pipeline`); any scheduler that evaluates the U-Net once per
            step.
        prompt_1, prompt_2, methods, ratio: the comparison; see :class:`BlendSettings`.
        seed: seed of the ``torch.Generator`` on ``generator_device`` (the CPU by default) that
            draws the noise, as diffusers' pipelines draw it for one image; 0 when neither
            ``seed`` nor ``generator`` is given.
        generator: a ``torch.Generator`` to draw the noise with, instead of ``seed``.
        latents: the initial noise itself, of shape ``1 x C x H/f x W/f``. The noise that
            stochastic schedulers add at each step still comes from ``generator`` or ``seed``
            (0 by default), never from torch's global random state.
        progress: show a progress bar (the pipeline's, configured by
            ``pipe.set_progress_bar_config``).
        callback_on_step_end: called after every U-Net call as diffusers calls it,
            ``callback(pipe, i, timestep, {"latents": latents})``, where ``latents`` holds one
            row per image (prompt 1, prompt 2, then the blends); a returned ``"latents"``
            replaces them. Needs the whole comparison in one batch.
        **settings: the keyword settings ``num_inference_steps``, ``guidance_scale``,
            ``height``, ``width``, ``negative_prompt``, ``switch_step``, ``unet_pooled``,
            ``output_type``, ``max_batch_size`` and ``generator_device``, each described in
            :class:`BlendSettings`.

    Every image starts from the same initial noise and all of them are denoised together as one
    batch: one U-Net evaluation per step covers the whole comparison, classifier-free guidance
    included. Stochastic schedulers (Euler ancestral, DDPM, SDE solvers) add the same noise to
    every image of the comparison: the noise stock diffusers adds to its one image.
    """
    # 1. Check inputs, before any work
    blend_settings = _settings("blend", prompt_1, prompt_2, methods, ratio, settings)
    family = check_inputs(pipe, blend_settings, seed, generator, latents, callback_on_step_end)
    blend_settings = replace(blend_settings, methods=tuple(methods))
    noise_source = "latents" if latents is not None else "generator" if generator is not None else "seed"
    if generator is None:
        seed = 0 if seed is None else seed
        generator = torch.Generator(blend_settings.generator_device).manual_seed(seed)
    else:  # the settings say where the noise was drawn
        blend_settings = replace(blend_settings, generator_device=str(generator.device))
    noise = _Noise(seed, noise_source, generator, latents)
    (result,) = _blend(pipe, family, blend_settings, [noise], progress, callback_on_step_end)
    return result


@_with_settings_in_signature
@torch.no_grad()
def blend_seeds(
    pipe,
    prompt_1: str,
    prompt_2: str,
    methods: Sequence[str] = tuple(METHODS),
    ratio: float = 0.5,
    *,
    seeds: Sequence[int],
    progress: bool = True,
    **settings,
) -> list[BlendResult]:
    """:func:`blend` for each of ``seeds``, batched together; one result per seed.

    Takes the keyword settings of :class:`BlendSettings`, as :func:`blend` does. Each seed's
    images are those ``blend(..., seed=seed)`` gives (to float tolerance): the batch only saves
    U-Net calls. Mind the memory: without ``max_batch_size``, one batch holds
    ``len(seeds) * (2 + len(methods))`` images, twice as many U-Net rows under classifier-free
    guidance; with it, the comparisons run in batches of at most ``max_batch_size`` images.
    """
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise InputError(f"seeds must be a non-empty sequence of integers, got {seeds!r}")
    blend_settings = _settings("blend_seeds", prompt_1, prompt_2, methods, ratio, settings)
    for seed in seeds:
        _check_seed(seed)
    family = check_inputs(pipe, blend_settings, None, None, None)
    blend_settings = replace(blend_settings, methods=tuple(methods))
    device = blend_settings.generator_device
    noises = [_Noise(seed, "seed", torch.Generator(device).manual_seed(seed), None) for seed in seeds]
    return _blend(pipe, family, blend_settings, noises, progress, None)


@dataclass(frozen=True)
class _Noise:
    """Where one comparison's noise comes from: its initial latents and its generator."""

    seed: int | None
    source: str  # "seed", "generator" or "latents"
    generator: torch.Generator
    latents: torch.Tensor | None


def _schedules(settings: BlendSettings, layout: CrossAttentionLayout) -> tuple[list[Schedule], int | None]:
    """Every image's schedule, the two plain images first, and SWITCH's step (None without it)."""
    s = settings
    switch_step = s.switch_step
    if "switch" in s.methods and switch_step is None:
        switch_step = default_switch_step(s.ratio, s.num_inference_steps)
    schedules = [plain(0.0, s.num_inference_steps), plain(1.0, s.num_inference_steps)]
    for method in s.methods:
        schedule = METHODS[method](s.ratio, s.num_inference_steps, layout, switch_step)
        if method == "unet" and s.unet_pooled != "ratio":
            # SDXL's pooled embedding, which UNET cannot split between the U-Net's halves
            weight = 0.0 if s.unet_pooled == "prompt_1" else 1.0
            schedule = replace(schedule, pooled_weights=(weight,) * s.num_inference_steps)
        schedules.append(schedule)
    return schedules, switch_step


def _blend(
    pipe, family: Family, settings: BlendSettings, noises: list[_Noise], progress: bool, callback_on_step_end
) -> list[BlendResult]:
    """Denoise one comparison (two plain images and the blends) per noise, in batches."""
    # 2. Define call parameters and the schedule of every image: which prompt it sees when
    s = settings
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    height, width = s.height or size, s.width or size
    device = pipe._execution_device
    guided = s.guidance_scale > 1
    layout = cross_attention_layout(pipe.unet)
    schedules, switch_step = _schedules(s, layout)

    # 3. Encode the prompts; every image shares the unconditional embedding
    conditioning = family.encode(pipe, (s.prompt_1, s.prompt_2), s.negative_prompt, device, guided, (height, width))

    # 4. Prepare timesteps
    timesteps, _ = retrieve_timesteps(pipe.scheduler, s.num_inference_steps, device)

    # 5. Prepare each comparison's initial noise once; every image of the comparison starts from it
    dtype = conditioning.embeds_1.dtype
    channels = pipe.unet.config.in_channels
    initial_noise = [
        pipe.prepare_latents(1, channels, height, width, dtype, device, n.generator, n.latents) for n in noises
    ]
    rows = [(k, schedule) for k in range(len(noises)) for schedule in schedules]  # comparison by comparison

    # 6. Denoise and decode in batches of at most max_batch_size images
    batch_size = s.max_batch_size or len(rows)
    batches = [rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]
    bar = pipe.progress_bar(total=len(timesteps) * len(batches)) if progress else tqdm(disable=True)
    images = []
    with bar:
        for batch in batches:
            latents = _denoise(
                pipe,
                [schedule for _, schedule in batch],
                torch.cat([initial_noise[k] for k, _ in batch]),
                [_copy_generator(noises[k].generator) for k, _ in batch],
                conditioning,
                layout,
                s,
                bar,
                callback_on_step_end,
            )
            images += family.decode(pipe, latents, s.output_type)
    pipe.maybe_free_model_hooks()

    recorded = {
        **asdict(s),
        "methods": list(s.methods),
        "ratio": float(s.ratio),
        "num_inference_steps": int(s.num_inference_steps),
        "guidance_scale": float(s.guidance_scale),
        "height": int(height),
        "width": int(width),
        "switch_step": switch_step,
        "generator_device": str(s.generator_device),
        "seed": None,  # each result's own, below
        "noise": None,
        "pipeline": type(pipe).__name__,
        "scheduler": type(pipe.scheduler).__name__,
        "model": pipe.name_or_path,
        "dtype": str(pipe.unet.dtype).removeprefix("torch."),
        "device": str(device),
        "versions": library_versions(),
    }
    num_images = len(schedules)
    results = []
    for k, n in enumerate(noises):
        own = images[k * num_images : (k + 1) * num_images]
        results.append(
            BlendResult(
                prompt_1=own[0],
                prompt_2=own[1],
                blends=dict(zip(s.methods, own[2:])),
                settings={**recorded, "seed": n.seed, "noise": n.source},
            )
        )
    return results


def _copy_generator(generator: torch.Generator) -> torch.Generator:
    """A new generator in the same state: it draws what ``generator`` would draw next."""
    copy = torch.Generator(generator.device)
    copy.set_state(generator.get_state())
    return copy


def _denoise(
    pipe,
    schedules: list[Schedule],
    latents: torch.Tensor,
    generators: list[torch.Generator],
    conditioning: Conditioning,
    layout: CrossAttentionLayout,
    settings: BlendSettings,
    bar,
    callback_on_step_end,
) -> torch.Tensor:
    """Denoise one batch of images, each following its schedule, from ``latents``; return the final latents.

    ``generators`` holds one generator per image, each in the state of its comparison's after the
    initial noise, so that the images of one comparison draw the same per-step noise.
    """
    # a fresh set of timesteps also resets the scheduler's state from the batch before
    timesteps, _ = retrieve_timesteps(pipe.scheduler, settings.num_inference_steps, latents.device)
    # PNDM evaluates its first step twice: its first two calls belong to step 0
    num_warmup_calls = len(timesteps) - settings.num_inference_steps
    dtype = conditioning.embeds_1.dtype
    token_rows = [s.step_weights for s in schedules]
    pooled_rows = [s.pooled_weights or s.step_weights for s in schedules]
    token_weights = torch.tensor(token_rows, dtype=dtype, device=latents.device).T
    pooled_weights = torch.tensor(pooled_rows, dtype=dtype, device=latents.device).T
    # which steps change a row's prompt weights, decided on the host: no device sync in the loop
    weights_at = [
        (tuple(r[k] for r in token_rows), tuple(r[k] for r in pooled_rows)) for k in range(len(token_rows[0]))
    ]
    first_conditional_row = len(schedules) if conditioning.guided else 0  # after the unconditional rows
    replacements = layer_replacements(
        schedules, layout, conditioning.embeds_1, conditioning.embeds_2, first_conditional_row
    )
    extra_step_kwargs = pipe.prepare_extra_step_kwargs(generators, 0.0)

    previous_step = None
    with row_conditioning(pipe.unet, replacements):
        for i, t in enumerate(timesteps):
            step = max(0, i - num_warmup_calls)
            if previous_step is None or weights_at[step] != weights_at[previous_step]:
                unet_inputs = conditioning.unet_inputs(token_weights[step], pooled_weights[step])
            previous_step = step

            latent_model_input = torch.cat([latents] * 2) if conditioning.guided else latents
            latent_model_input = pipe.scheduler.scale_model_input(latent_model_input, t)
            noise_pred = pipe.unet(latent_model_input, t, **unet_inputs, return_dict=False)[0]
            if conditioning.guided:
                noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                noise_pred = noise_pred_uncond + settings.guidance_scale * (noise_pred_text - noise_pred_uncond)
            latents = pipe.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]

            if callback_on_step_end is not None:
                outputs = callback_on_step_end(pipe, i, t, {"latents": latents}) or {}
                latents = outputs.pop("latents", latents)
            bar.update()
    return latents
