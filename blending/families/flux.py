"""FLUX.1 (dev and schnell): CLIP's pooled embedding and T5's token states, a rectified-flow
transformer on latents packed in 2x2 patches, and no unconditional rows.

FLUX.1 dev is guidance-distilled: ``guidance_scale`` is a number the transformer takes as an
input (3.5 in diffusers), not classifier-free guidance, so each image costs one transformer row.
FLUX.1 schnell takes no guidance at all. Without unconditional rows there is no negative prompt.
The timesteps follow ``FluxPipeline``: sigmas from 1 to ``1/steps``, shifted by a ``mu`` that
grows with the number of image tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import retrieve_timesteps

from ..errors import InputError
from ..methods import CrossAttentionLayout, Schedule
from .base import Conditioning, Denoiser, Guidance, RowWeights
from .transformer import TransformerFamily, calculate_shift

__all__ = ["Flux"]

#: ``FluxPipeline``'s default guidance for the guidance-distilled FLUX.1 dev.
FLUX_DEV_GUIDANCE = 3.5


class Flux(TransformerFamily):
    """``FluxPipeline``: FLUX.1 dev (guidance-distilled) and schnell (no guidance), text to image."""

    name = "FLUX.1"
    pipeline_class = "FluxPipeline"
    weight_components = ("transformer", "vae", "text_encoder", "text_encoder_2")

    def guidance(self, pipe, guidance_scale: float | None) -> Guidance:
        if not pipe.transformer.config.guidance_embeds:
            if guidance_scale is not None:
                raise InputError(
                    f"guidance_scale: this FLUX.1 transformer (schnell) takes no guidance; leave it unset, "
                    f"got {guidance_scale!r}"
                )
            return Guidance(None, "none")
        return Guidance(FLUX_DEV_GUIDANCE if guidance_scale is None else float(guidance_scale), "distilled")

    def unsupported(self, pipe, settings) -> str | None:
        if settings.negative_prompt is not None:
            return "negative_prompt: FLUX.1 has no unconditional rows, so no negative prompt"
        return super().unsupported(pipe, settings)

    def size_multiple(self, pipe) -> int:
        return self._patch_pixels(pipe)

    def _patch_pixels(self, pipe) -> int:
        """The pixels on a side of one image token: the VAE's downsampling times the 2x2 packing.
        (From the VAE, not ``pipe.vae_scale_factor``, whose definition changed in diffusers 0.31.)"""
        return 2 ** len(pipe.vae.config.block_out_channels)

    def encode(self, pipe, settings, guidance: Guidance, size: tuple[int, int], device) -> Conditioning:
        embeds, pooled, text_ids = pipe.encode_prompt(
            prompt=[settings.prompt_1, settings.prompt_2], prompt_2=None, device=device, num_images_per_prompt=1
        )
        # the text tokens' positions, the same for every row: diffusers before 0.31 gives them a
        # batch dimension (one row each, broadcast), later versions none
        text_ids = text_ids[:1] if text_ids.dim() == 3 else text_ids
        return Conditioning(embeds[:1], embeds[1:], None, pooled[:1], pooled[1:], None, {"txt_ids": text_ids})

    def _channels(self, pipe) -> int:
        return pipe.transformer.config.in_channels // 4

    def latents_shape(self, pipe, size: tuple[int, int]) -> tuple[int, ...]:
        height, width = (s // self._patch_pixels(pipe) for s in size)
        return (1, height * width, pipe.transformer.config.in_channels)

    def initial_latents(self, pipe, size, dtype, device, generator, latents) -> torch.Tensor:
        height, width = size
        return pipe.prepare_latents(1, self._channels(pipe), height, width, dtype, device, generator, latents)[0]

    def timesteps(self, pipe, num_inference_steps: int, size: tuple[int, int], device) -> torch.Tensor:
        sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)
        if getattr(pipe.scheduler.config, "use_flow_sigmas", False):
            sigmas = None
        mu = calculate_shift(self.latents_shape(pipe, size)[1], pipe.scheduler.config)
        timesteps = retrieve_timesteps(pipe.scheduler, num_inference_steps, device, sigmas=sigmas, mu=mu)[0]
        if hasattr(pipe.scheduler, "set_begin_index"):
            pipe.scheduler.set_begin_index(0)
        return timesteps

    @contextlib.contextmanager
    def denoiser(
        self,
        pipe,
        conditioning: Conditioning,
        guidance: Guidance,
        schedules: Sequence[Schedule],
        layout: CrossAttentionLayout | None,
        size: tuple[int, int],
    ) -> Iterator[Denoiser]:
        device = conditioning.embeds_1.device
        weights = RowWeights(schedules, conditioning.dtype, device)
        rows = len(schedules)
        # the image tokens' positions, as the stock pipeline's prepare_latents gives them (its
        # signature for them changed between diffusers versions; this call did not)
        noise = torch.zeros(self.latents_shape(pipe, size), dtype=conditioning.dtype, device=device)
        image_ids = pipe.prepare_latents(1, self._channels(pipe), *size, conditioning.dtype, device, None, noise)[1]
        distilled = None
        if guidance.kind == "distilled":
            distilled = torch.full([1], guidance.scale, device=device, dtype=torch.float32).expand(rows)

        def denoise(latents: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor:
            inputs = weights.inputs_at(step, lambda tokens, pooled: self.text_inputs(conditioning, tokens, pooled))
            return pipe.transformer(
                hidden_states=latents,
                timestep=t.expand(rows).to(latents.dtype) / 1000,
                guidance=distilled,
                txt_ids=conditioning.extras["txt_ids"],
                img_ids=image_ids,
                **inputs,
                return_dict=False,
            )[0]

        yield denoise

    def decode(self, pipe, latents: torch.Tensor, output_type: str, size: tuple[int, int]) -> list:
        if output_type == "latent":
            return list(latents)
        vae = pipe.vae
        images = []
        for one in latents.split(1):  # one image at a time: the decoder's activations dominate memory
            one = pipe._unpack_latents(one, *size, pipe.vae_scale_factor)
            one = one / vae.config.scaling_factor + vae.config.shift_factor
            decoded = vae.decode(one, return_dict=False)[0]
            images.extend(pipe.image_processor.postprocess(decoded, output_type=output_type))
        return images
