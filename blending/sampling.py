"""``blend``: both plain images and every requested blend, denoised together as one batch.

The loop here drives the scheduler and reads the schedules (:mod:`blending.methods`); everything
that differs between model families (conditioning, the guided model call, latents, timesteps,
decoding, layer layout) is the family's (:mod:`blending.families`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from tqdm.auto import tqdm

from .errors import InputError
from .families import Family, family_of
from .families.base import Guidance
from .methods import METHODS, CrossAttentionLayout, Schedule, default_switch_step, plain, schedule_of
from .settings import (
    BlendResult,
    BlendSettings,
    check_seed,
    check_settings,
    library_versions,
    settings_from_call,
    with_settings_in_signature,
)

__all__ = ["blend", "blend_seeds", "check_inputs", "check_pipeline"]

logger = logging.getLogger(__name__)


def check_pipeline(pipe) -> Family:
    """The family of ``pipe``; an :class:`~blending.InputError` naming ``pipe`` unless the methods can run on it.

    Supported: ``StableDiffusionPipeline`` (SD 1.x and 2.x), ``StableDiffusionXLPipeline`` (SDXL
    base), ``StableDiffusion3Pipeline`` (SD3, SD3.5) and ``FluxPipeline`` (FLUX.1 dev and
    schnell), text to image, with a scheduler that evaluates the model once per step.
    """
    family = family_of(pipe)
    family.check_pipeline(pipe)
    scheduler = type(pipe.scheduler).__name__
    if getattr(pipe.scheduler, "order", 1) != 1:
        raise InputError(
            f"pipe: its scheduler {scheduler} evaluates the {family.network_name} {pipe.scheduler.order} times per step; blending "
            "needs one evaluation per step (UniPC, DDIM, PNDM, LMS, Euler, DPM-Solver++, flow-matching Euler, ...)"
        )
    return family


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


def check_inputs(
    pipe, settings: BlendSettings, seed, generator, latents, callback_on_step_end=None
) -> tuple[Family, Guidance]:
    """The family of ``pipe`` and what it makes of ``guidance_scale``; an :class:`~blending.InputError`
    naming the parameter for any input :func:`blend` cannot honour."""
    family = check_pipeline(pipe)
    check_settings(settings)
    s = settings
    reason = family.unsupported(pipe, s)
    if reason is not None:
        raise InputError(reason)
    guidance = family.guidance(pipe, s.guidance_scale)
    multiple = family.size_multiple(pipe)
    for name, size in (("height", s.height), ("width", s.width)):
        if size is not None and size % multiple:
            raise InputError(f"{name} must be a positive multiple of {multiple}, got {size!r}")
    if callback_on_step_end is not None and s.max_batch_size is not None and s.max_batch_size < s.images_per_comparison:
        raise InputError(
            f"max_batch_size must be at least {s.images_per_comparison} (the images of one comparison) when "
            f"callback_on_step_end is given, which sees the whole comparison at every step; got {s.max_batch_size}"
        )
    if seed is not None and generator is not None:
        raise InputError("seed and generator are alternatives: pass one of them, not both")
    if seed is not None:
        check_seed(seed)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise InputError(f"generator must be one torch.Generator, got {type(generator).__name__}")
    _check_generator_placement(pipe, s.generator_device, generator)
    size = _size(pipe, family, s)
    if latents is not None:
        expected = family.latents_shape(pipe, size)
        if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != expected:
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise InputError(f"latents must be a tensor of shape {expected}, got {shape}")
    # PNDM evaluates its first step twice; any other extra evaluation has no step to follow
    steps = s.num_inference_steps
    num_calls = len(family.timesteps(pipe, steps, size, pipe._execution_device))
    if num_calls not in (steps, steps + 1):
        raise InputError(
            f"pipe: its scheduler {type(pipe.scheduler).__name__} makes {num_calls} {family.network_name} calls for {steps} steps; "
            "blending needs one call per step"
        )
    return family, guidance


def _methods_of(pipe) -> tuple[str, ...]:
    """Every method the family of ``pipe`` defines, in the paper's order."""
    family = family_of(pipe)
    return tuple(m for m in METHODS if m not in family.undefined_methods)


def _size(pipe, family: Family, settings: BlendSettings) -> tuple[int, int]:
    """The images' height and width: the settings', else the stock pipeline's default."""
    height, width = family.default_size(pipe)
    return settings.height or height, settings.width or width


@with_settings_in_signature
@torch.no_grad()
def blend(
    pipe,
    prompt_1: str,
    prompt_2: str,
    methods: Sequence[str] | None = None,
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
        pipe: a ``StableDiffusionPipeline`` (SD 1.x/2.x), ``StableDiffusionXLPipeline`` (SDXL),
            ``StableDiffusion3Pipeline`` (SD3) or ``FluxPipeline`` (FLUX.1) (see
            :func:`blending.load_pipeline`); any scheduler that evaluates the model once per step.
        prompt_1, prompt_2, methods, ratio: the comparison; see :class:`BlendSettings`.
            ``methods`` defaults to every method the pipeline's family defines: all four on
            SD 1.x/2.x and SDXL, all but UNET on SD3 and FLUX.1.
        seed: seed of the ``torch.Generator`` on ``generator_device`` (the CPU by default) that
            draws the noise, as diffusers' pipelines draw it for one image; 0 when neither
            ``seed`` nor ``generator`` is given.
        generator: a ``torch.Generator`` to draw the noise with, instead of ``seed``.
        latents: the initial noise itself, in the shape the stock pipeline's ``latents`` takes
            (``1 x C x H/f x W/f``; FLUX.1: packed, ``1 x tokens x 4C``). The noise that
            stochastic schedulers add at each step still comes from ``generator`` or ``seed``
            (0 by default), never from torch's global random state.
        progress: show a progress bar (the pipeline's, configured by
            ``pipe.set_progress_bar_config``).
        callback_on_step_end: called after every model call as diffusers calls it,
            ``callback(pipe, i, timestep, {"latents": latents})``, where ``latents`` holds one
            row per image (prompt 1, prompt 2, then the blends); a returned ``"latents"``
            replaces them. Needs the whole comparison in one batch.
        **settings: the keyword settings ``num_inference_steps``, ``guidance_scale``,
            ``height``, ``width``, ``negative_prompt``, ``switch_step``, ``unet_pooled``,
            ``output_type``, ``max_batch_size`` and ``generator_device``, each described in
            :class:`BlendSettings`.

    Every image starts from the same initial noise and all of them are denoised together as one
    batch: one model evaluation per step covers the whole comparison, classifier-free guidance
    included. Stochastic schedulers (Euler ancestral, DDPM, SDE solvers) add the same noise to
    every image of the comparison: the noise stock diffusers adds to its one image.
    """
    # 1. Check inputs, before any work
    methods = _methods_of(pipe) if methods is None else methods
    blend_settings = settings_from_call("blend", prompt_1, prompt_2, methods, ratio, settings)
    family, guidance = check_inputs(pipe, blend_settings, seed, generator, latents, callback_on_step_end)
    blend_settings = replace(blend_settings, methods=tuple(methods))
    noise_source = "latents" if latents is not None else "generator" if generator is not None else "seed"
    if generator is None:
        seed = 0 if seed is None else seed
        generator = torch.Generator(blend_settings.generator_device).manual_seed(seed)
    else:  # the settings say where the noise was drawn
        blend_settings = replace(blend_settings, generator_device=str(generator.device))
    noise = _Noise(seed, noise_source, generator, latents)
    (result,) = _blend(pipe, family, guidance, blend_settings, [noise], progress, callback_on_step_end)
    return result


@with_settings_in_signature
@torch.no_grad()
def blend_seeds(
    pipe,
    prompt_1: str,
    prompt_2: str,
    methods: Sequence[str] | None = None,
    ratio: float = 0.5,
    *,
    seeds: Sequence[int],
    progress: bool = True,
    **settings,
) -> list[BlendResult]:
    """:func:`blend` for each of ``seeds``, batched together; one result per seed.

    Takes the keyword settings of :class:`BlendSettings`, as :func:`blend` does. Each seed's
    images are those ``blend(..., seed=seed)`` gives (to float tolerance): the batch only saves
    model calls. Mind the memory: without ``max_batch_size``, one batch holds
    ``len(seeds) * (2 + len(methods))`` images, twice as many U-Net rows under classifier-free
    guidance; with it, the comparisons run in batches of at most ``max_batch_size`` images.
    """
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise InputError(f"seeds must be a non-empty sequence of integers, got {seeds!r}")
    methods = _methods_of(pipe) if methods is None else methods
    blend_settings = settings_from_call("blend_seeds", prompt_1, prompt_2, methods, ratio, settings)
    for seed in seeds:
        check_seed(seed)
    family, guidance = check_inputs(pipe, blend_settings, None, None, None)
    blend_settings = replace(blend_settings, methods=tuple(methods))
    device = blend_settings.generator_device
    noises = [_Noise(seed, "seed", torch.Generator(device).manual_seed(seed), None) for seed in seeds]
    return _blend(pipe, family, guidance, blend_settings, noises, progress, None)


@dataclass(frozen=True)
class _Noise:
    """Where one comparison's noise comes from: its initial latents and its generator."""

    seed: int | None
    source: str  # "seed", "generator" or "latents"
    generator: torch.Generator
    latents: torch.Tensor | None


def _schedules(settings: BlendSettings, layout: CrossAttentionLayout | None) -> tuple[list[Schedule], int | None]:
    """Every image's schedule, the two plain images first, and SWITCH's step (None without it)."""
    s = settings
    switch_step = s.switch_step
    if "switch" in s.methods and switch_step is None:
        switch_step = default_switch_step(s.ratio, s.num_inference_steps)
    schedules = [plain(0.0, s.num_inference_steps), plain(1.0, s.num_inference_steps)]
    for method in s.methods:
        schedules.append(
            schedule_of(
                method, s.ratio, s.num_inference_steps, layout, switch_step=switch_step, unet_pooled=s.unet_pooled
            )
        )
    return schedules, switch_step


def _blend(
    pipe,
    family: Family,
    guidance: Guidance,
    settings: BlendSettings,
    noises: list[_Noise],
    progress: bool,
    callback_on_step_end,
) -> list[BlendResult]:
    """Denoise one comparison (two plain images and the blends) per noise, in batches."""
    # 2. Define call parameters and the schedule of every image: which prompt it sees when
    s = settings
    size = _size(pipe, family, s)
    device = pipe._execution_device
    layout = family.layer_layout(pipe)
    schedules, switch_step = _schedules(s, layout)

    # 3. Encode the prompts; every image shares the unconditional embedding
    conditioning = family.encode(pipe, s, guidance, size, device)

    # 4. Prepare each comparison's initial noise once; every image of the comparison starts from it
    initial_noise = [
        family.initial_latents(pipe, size, conditioning.dtype, device, n.generator, n.latents) for n in noises
    ]
    rows = [(k, schedule) for k in range(len(noises)) for schedule in schedules]  # comparison by comparison

    # 5. Denoise and decode in batches of at most max_batch_size images
    batch_size = s.max_batch_size or len(rows)
    batches = [rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]
    bar = pipe.progress_bar(total=s.num_inference_steps * len(batches)) if progress else tqdm(disable=True)
    images = []
    with bar:
        for batch in batches:
            batch_schedules = [schedule for _, schedule in batch]
            with family.denoiser(pipe, conditioning, guidance, batch_schedules, layout, size) as denoiser:
                latents = _denoise(
                    pipe,
                    family,
                    denoiser,
                    torch.cat([initial_noise[k] for k, _ in batch]),
                    [_copy_generator(noises[k].generator) for k, _ in batch],
                    s.num_inference_steps,
                    size,
                    bar,
                    callback_on_step_end,
                )
            images += family.decode(pipe, latents, s.output_type, size)
    pipe.maybe_free_model_hooks()

    height, width = size
    recorded = {
        **asdict(s),
        "methods": list(s.methods),
        "ratio": float(s.ratio),
        "num_inference_steps": int(s.num_inference_steps),
        "guidance_scale": guidance.scale,
        "guidance": guidance.kind,
        "height": int(height),
        "width": int(width),
        "switch_step": switch_step,
        "generator_device": str(s.generator_device),
        "seed": None,  # each result's own, below
        "noise": None,
        "pipeline": type(pipe).__name__,
        "family": family.name,
        "scheduler": type(pipe.scheduler).__name__,
        "model": pipe.name_or_path,
        "dtype": str(family.network(pipe).dtype).removeprefix("torch."),
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


def _step_kwargs(scheduler, generators: list[torch.Generator]) -> dict:
    """The scheduler's optional step arguments, as diffusers' pipelines pass them: ``eta`` 0 (DDIM's
    deterministic sampling) and the generators of stochastic schedulers, where it takes them."""
    parameters = inspect.signature(scheduler.step).parameters
    kwargs = {}
    if "eta" in parameters:
        kwargs["eta"] = 0.0
    if "generator" in parameters:
        kwargs["generator"] = generators
    return kwargs


def _denoise(
    pipe,
    family: Family,
    denoiser,
    latents: torch.Tensor,
    generators: list[torch.Generator],
    num_inference_steps: int,
    size: tuple[int, int],
    bar,
    callback_on_step_end,
) -> torch.Tensor:
    """Denoise one batch of images from ``latents`` with the family's ``denoiser``; return the final latents.

    ``generators`` holds one generator per image, each in the state of its comparison's after the
    initial noise, so that the images of one comparison draw the same per-step noise.
    """
    # a fresh set of timesteps also resets the scheduler's state from the batch before
    timesteps = family.timesteps(pipe, num_inference_steps, size, latents.device)
    # PNDM evaluates its first step twice: its first two calls belong to step 0
    num_warmup_calls = len(timesteps) - num_inference_steps
    step_kwargs = _step_kwargs(pipe.scheduler, generators)
    for i, t in enumerate(timesteps):
        step = max(0, i - num_warmup_calls)
        model_output = denoiser(latents, t, step)
        latents = pipe.scheduler.step(model_output, t, latents, **step_kwargs, return_dict=False)[0]
        if callback_on_step_end is not None:
            outputs = callback_on_step_end(pipe, i, t, {"latents": latents}) or {}
            latents = outputs.pop("latents", latents)
        if i >= num_warmup_calls:
            bar.update()
    return latents
