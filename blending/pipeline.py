"""``blend``: both plain images and every requested blend, denoised together as one batch."""

from __future__ import annotations

import logging
import numbers
import platform
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import retrieve_timesteps
from tqdm.auto import tqdm

from .attention import cross_attention_layout, row_conditioning
from .methods import METHODS, Schedule, default_switch_step, plain

__all__ = ["BlendResult", "OUTPUT_TYPES", "blend", "blend_seeds", "library_versions"]

logger = logging.getLogger(__name__)

OUTPUT_TYPES = ("pil", "np", "pt", "latent")
_MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes unsigned 64-bit seeds


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


def check_inputs(
    pipe,
    prompt_1,
    prompt_2,
    methods,
    ratio,
    seed,
    generator,
    latents,
    num_inference_steps,
    height,
    width,
    negative_prompt,
    switch_step,
    output_type,
) -> None:
    """Raise a ``ValueError`` naming the parameter for any input :func:`blend` cannot honour."""
    for name, prompt in (("prompt_1", prompt_1), ("prompt_2", prompt_2)):
        if not isinstance(prompt, str):
            raise ValueError(f"{name} must be a string, got {type(prompt).__name__}")
    if negative_prompt is not None and not isinstance(negative_prompt, str):
        raise ValueError(f"negative_prompt must be a string or None, got {type(negative_prompt).__name__}")
    if isinstance(methods, str) or not isinstance(methods, Sequence):
        raise ValueError(f"methods must be a sequence of method names such as ('switch',), got {methods!r}")
    if len(methods) == 0:
        raise ValueError(f"methods must name at least one of {list(METHODS)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"methods: unknown method {unknown[0]!r}; choose from {list(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ValueError(f"methods must not repeat a method, got {list(methods)}")
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 <= ratio <= 1:
        raise ValueError(f"ratio must be a number in [0, 1], got {ratio!r}")
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, numbers.Integral) or num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
    if switch_step is not None:
        if "switch" not in methods:
            raise ValueError("switch_step is only used by the 'switch' method, which methods does not include")
        if (
            isinstance(switch_step, bool)
            or not isinstance(switch_step, numbers.Integral)
            or not 0 <= switch_step <= num_inference_steps
        ):
            raise ValueError(
                f"switch_step must be an integer in [0, num_inference_steps={num_inference_steps}], got {switch_step!r}"
            )
    for name, size in (("height", height), ("width", width)):
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size <= 0 or size % pipe.vae_scale_factor:
            raise ValueError(f"{name} must be a positive multiple of {pipe.vae_scale_factor}, got {size!r}")
    if seed is not None and generator is not None:
        raise ValueError("seed and generator are alternatives: pass one of them, not both")
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed <= _MAX_SEED
    ):
        raise ValueError(f"seed must be an integer in [0, 2**64 - 1], got {seed!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be one torch.Generator, got {type(generator).__name__}")
    if latents is not None:
        expected = (
            1,
            pipe.unet.config.in_channels,
            (height or pipe.unet.config.sample_size * pipe.vae_scale_factor) // pipe.vae_scale_factor,
            (width or pipe.unet.config.sample_size * pipe.vae_scale_factor) // pipe.vae_scale_factor,
        )
        if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != expected:
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"latents must be a tensor of shape {expected}, got {shape}")
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {list(OUTPUT_TYPES)}, got {output_type!r}")


@torch.no_grad()
def blend(
    pipe,
    prompt_1: str,
    prompt_2: str,
    methods: Sequence[str] = ("textual", "switch", "unet", "alternate"),
    ratio: float = 0.5,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    latents: torch.Tensor | None = None,
    num_inference_steps: int = 25,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    negative_prompt: str | None = None,
    switch_step: int | None = None,
    output_type: str = "pil",
    progress: bool = True,
    callback_on_step_end: Callable[[Any, int, torch.Tensor, dict], dict] | None = None,
) -> BlendResult:
    """Blend two prompts with each of ``methods``, beside the two plain images.

    Args:
        pipe: a ``StableDiffusionPipeline`` (see :func:`blending.load_pipeline`).
        prompt_1, prompt_2: the two concepts, e.g. ``"lion"`` and ``"cat"``.
        methods: names from :data:`blending.METHODS`, in the order wanted in the result.
        ratio: the weight of prompt 2 for every method, in [0, 1]. 0 gives exactly prompt 1's
            image, 1 exactly prompt 2's; 0.5 is the paper's setting.
        seed: seed of the CPU ``torch.Generator`` that draws the initial noise, as
            ``StableDiffusionPipeline`` draws it for one image; 0 when neither ``seed`` nor
            ``generator`` is given.
        generator: a ``torch.Generator`` to draw the noise with, instead of ``seed``.
        latents: the initial noise itself, of shape ``1 x C x H/f x W/f``; overrides both.
        num_inference_steps, guidance_scale, height, width, negative_prompt: as in
            ``StableDiffusionPipeline``; the paper uses 25 steps, guidance 7.5 and 512x512.
        switch_step: SWITCH's number of prompt-1 steps; defaults to
            ``round(num_inference_steps * (1 - ratio))``.
        output_type: ``"pil"``, ``"np"``, ``"pt"`` or ``"latent"``, as in diffusers.
        progress: show a progress bar (the pipeline's, configured by
            ``pipe.set_progress_bar_config``).
        callback_on_step_end: called after every step as diffusers calls it,
            ``callback(pipe, step, timestep, {"latents": latents})``, where ``latents`` holds one
            row per image (prompt 1, prompt 2, then the blends); a returned ``"latents"``
            replaces them.

    Every image starts from the same initial noise and all of them are denoised together as one
    batch: one U-Net evaluation per step covers the whole comparison, classifier-free guidance
    included.
    """
    # 1. Check inputs, before any work
    check_inputs(
        pipe, prompt_1, prompt_2, methods, ratio, seed, generator, latents,
        num_inference_steps, height, width, negative_prompt, switch_step, output_type,
    )  # fmt: skip
    noise_source = "latents" if latents is not None else "generator" if generator is not None else "seed"
    if noise_source == "seed":
        seed = 0 if seed is None else seed
        generator = torch.Generator("cpu").manual_seed(seed)
    (result,) = _blend(
        pipe, prompt_1, prompt_2, tuple(methods), ratio, [_Noise(seed, noise_source, generator, latents)],
        num_inference_steps, guidance_scale, height, width, negative_prompt, switch_step, output_type,
        progress, callback_on_step_end,
    )  # fmt: skip
    return result


@torch.no_grad()
def blend_seeds(
    pipe,
    prompt_1: str,
    prompt_2: str,
    methods: Sequence[str] = ("textual", "switch", "unet", "alternate"),
    ratio: float = 0.5,
    *,
    seeds: Sequence[int],
    num_inference_steps: int = 25,
    guidance_scale: float = 7.5,
    height: int | None = None,
    width: int | None = None,
    negative_prompt: str | None = None,
    switch_step: int | None = None,
    output_type: str = "pil",
    progress: bool = True,
) -> list[BlendResult]:
    """:func:`blend` for each of ``seeds``, all in one batch; one result per seed.

    Each seed's images are those ``blend(..., seed=seed)`` gives (to float tolerance): the batch
    only saves U-Net calls, ``len(seeds)`` comparisons in each. Mind the memory: the batch holds
    ``2 * len(seeds) * (2 + len(methods))`` images under classifier-free guidance.
    """
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or len(seeds) == 0:
        raise ValueError(f"seeds must be a non-empty sequence of integers, got {seeds!r}")
    for seed in seeds:
        check_inputs(
            pipe, prompt_1, prompt_2, methods, ratio, seed, None, None,
            num_inference_steps, height, width, negative_prompt, switch_step, output_type,
        )  # fmt: skip
    noises = [_Noise(seed, "seed", torch.Generator("cpu").manual_seed(seed), None) for seed in seeds]
    return _blend(
        pipe, prompt_1, prompt_2, tuple(methods), ratio, noises, num_inference_steps, guidance_scale,
        height, width, negative_prompt, switch_step, output_type, progress, None,
    )  # fmt: skip


@dataclass(frozen=True)
class _Noise:
    """Where one comparison's initial noise comes from."""

    seed: int | None
    source: str  # "seed", "generator" or "latents"
    generator: torch.Generator | None
    latents: torch.Tensor | None


def _blend(
    pipe, prompt_1, prompt_2, methods, ratio, noises: list[_Noise], num_inference_steps, guidance_scale,
    height, width, negative_prompt, switch_step, output_type, progress, callback_on_step_end,
) -> list[BlendResult]:  # fmt: skip
    """Denoise one comparison (two plain images and the blends) per noise, all in one batch."""
    # 2. Define call parameters and the schedule of every image: which prompt it sees when
    height = height or pipe.unet.config.sample_size * pipe.vae_scale_factor
    width = width or pipe.unet.config.sample_size * pipe.vae_scale_factor
    device = pipe._execution_device
    do_classifier_free_guidance = guidance_scale > 1
    if "switch" in methods and switch_step is None:
        switch_step = default_switch_step(ratio, num_inference_steps)
    layout = cross_attention_layout(pipe.unet)
    schedules: list[Schedule] = [plain(0.0, num_inference_steps), plain(1.0, num_inference_steps)]
    schedules += [METHODS[m](ratio, num_inference_steps, layout, switch_step) for m in methods]
    num_images = len(schedules)
    schedules = schedules * len(noises)  # rows: the comparison of the first noise, then the next

    # 3. Encode the prompts; every image shares the unconditional embedding
    negative = None if negative_prompt is None else [negative_prompt] * 2
    prompt_embeds, negative_embeds = pipe.encode_prompt(
        [prompt_1, prompt_2], device, 1, do_classifier_free_guidance, negative
    )
    embeds_1, embeds_2 = prompt_embeds[:1], prompt_embeds[1:]

    # 4. Prepare timesteps
    timesteps, _ = retrieve_timesteps(pipe.scheduler, num_inference_steps, device)
    if len(timesteps) != num_inference_steps:
        raise ValueError(
            f"scheduler: {type(pipe.scheduler).__name__} makes {len(timesteps)} U-Net calls for "
            f"{num_inference_steps} steps; blending needs a scheduler with one call per step"
        )

    # 5. Prepare each initial noise once, and give every image of its comparison the same
    noise = torch.cat([
        pipe.prepare_latents(1, pipe.unet.config.in_channels, height, width, prompt_embeds.dtype, device, n.generator, n.latents)
        for n in noises
    ])  # fmt: skip
    latents = noise.repeat_interleave(num_images, dim=0)
    extra_step_kwargs = pipe.prepare_extra_step_kwargs(noises[0].generator, 0.0)

    # 6. Per-step and per-layer conditioning
    step_weights = torch.tensor([s.step_weights for s in schedules], dtype=prompt_embeds.dtype, device=device).T
    # the conditional rows come after the unconditional ones under guidance
    first_conditional_row = len(schedules) if do_classifier_free_guidance else 0
    replacements = _layer_replacements(schedules, layout, embeds_1, embeds_2, first_conditional_row)
    if do_classifier_free_guidance:
        unconditional = negative_embeds[:1].expand(len(schedules), -1, -1)

    # 7. Denoising loop
    bar = pipe.progress_bar(total=num_inference_steps) if progress else tqdm(total=num_inference_steps, disable=True)
    previous_weights = None
    with bar, row_conditioning(pipe.unet, replacements):
        for i, t in enumerate(timesteps):
            weights = step_weights[i]
            if previous_weights is None or not torch.equal(weights, previous_weights):
                conditional = _interpolate(embeds_1, embeds_2, weights)
                encoder_hidden_states = (
                    torch.cat([unconditional, conditional]) if do_classifier_free_guidance else conditional
                )
                previous_weights = weights

            latent_model_input = torch.cat([latents] * 2) if do_classifier_free_guidance else latents
            latent_model_input = pipe.scheduler.scale_model_input(latent_model_input, t)
            noise_pred = pipe.unet(latent_model_input, t, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]
            if do_classifier_free_guidance:
                noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
            latents = pipe.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]

            if callback_on_step_end is not None:
                outputs = callback_on_step_end(pipe, i, t, {"latents": latents}) or {}
                latents = outputs.pop("latents", latents)
            bar.update()

    # 8. Decode
    if output_type == "latent":
        images = list(latents)
    else:
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
        images = pipe.image_processor.postprocess(decoded, output_type=output_type, do_denormalize=[True] * len(latents))
        images = list(images)
    pipe.maybe_free_model_hooks()

    settings = {
        "prompt_1": prompt_1,
        "prompt_2": prompt_2,
        "methods": list(methods),
        "ratio": float(ratio),
        "seed": None,  # each result's own, below
        "noise": None,
        "num_inference_steps": int(num_inference_steps),
        "guidance_scale": float(guidance_scale),
        "height": int(height),
        "width": int(width),
        "negative_prompt": negative_prompt,
        "switch_step": switch_step,
        "output_type": output_type,
        "scheduler": type(pipe.scheduler).__name__,
        "model": pipe.name_or_path,
        "dtype": str(pipe.unet.dtype).removeprefix("torch."),
        "device": str(device),
        "versions": library_versions(),
    }
    results = []
    for k, n in enumerate(noises):
        own = images[k * num_images : (k + 1) * num_images]
        results.append(
            BlendResult(
                prompt_1=own[0],
                prompt_2=own[1],
                blends=dict(zip(methods, own[2:])),
                settings={**settings, "seed": n.seed, "noise": n.source},
            )
        )
    return results


def _interpolate(embeds_1: torch.Tensor, embeds_2: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Rows of ``(1 - w) * embeds_1 + w * embeds_2``, one per weight; exact at w = 0 and w = 1."""
    weights = weights[:, None, None]
    return (1 - weights) * embeds_1 + weights * embeds_2


def _layer_replacements(schedules, layout, embeds_1, embeds_2, first_conditional_row):
    """For each cross-attention layer, the batch rows whose conditioning it must replace."""
    replacements = {}
    for layer, name in enumerate(layout.names):
        rows = [first_conditional_row + j for j, s in enumerate(schedules) if s.layer_weights is not None]
        if not rows:
            break
        weights = torch.tensor(
            [s.layer_weights[layer] for s in schedules if s.layer_weights is not None],
            dtype=embeds_1.dtype,
            device=embeds_1.device,
        )
        replacements[name] = (torch.tensor(rows, device=embeds_1.device), _interpolate(embeds_1, embeds_2, weights))
    return replacements
