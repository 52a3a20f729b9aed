"""Stable Diffusion 3: two CLIP encoders and T5, an MMDiT transformer, flow matching.

The token states are the two CLIP encoders' (concatenated and padded) followed by T5's; the
pooled embedding (both CLIP encoders' pooled outputs) modulates every joint block. The
transformer is called as ``StableDiffusion3Pipeline`` calls it, with classifier-free guidance.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import retrieve_timesteps

from ..methods import CrossAttentionLayout, Schedule
from .base import Conditioning, Denoiser, Guidance, RowWeights
from .transformer import TransformerFamily, calculate_shift

__all__ = ["StableDiffusion3"]

#: ``StableDiffusion3Pipeline``'s default guidance scale.
SD3_GUIDANCE_SCALE = 7.0


class StableDiffusion3(TransformerFamily):
    """``StableDiffusion3Pipeline``: SD3 and SD3.5, text to image."""

    name = "SD3"
    pipeline_class = "StableDiffusion3Pipeline"
    weight_components = ("transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")

    def guidance(self, pipe, guidance_scale: float | None) -> Guidance:
        scale = SD3_GUIDANCE_SCALE if guidance_scale is None else float(guidance_scale)
        return Guidance(scale, "classifier-free")

    def size_multiple(self, pipe) -> int:
        return pipe.vae_scale_factor * pipe.transformer.config.patch_size

    def encode(self, pipe, settings, guidance: Guidance, size: tuple[int, int], device) -> Conditioning:
        guided = guidance.unconditional_rows
        negative = None if settings.negative_prompt is None else [settings.negative_prompt] * 2
        embeds, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
            prompt=[settings.prompt_1, settings.prompt_2],
            prompt_2=None,
            prompt_3=None,
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=guided,
            negative_prompt=negative,
        )
        return Conditioning(
            embeds[:1],
            embeds[1:],
            negative_embeds[:1] if guided else None,
            pooled[:1],
            pooled[1:],
            negative_pooled[:1] if guided else None,
        )

    def latents_shape(self, pipe, size: tuple[int, int]) -> tuple[int, ...]:
        height, width = size
        channels = pipe.transformer.config.in_channels
        return (1, channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)

    def initial_latents(self, pipe, size, dtype, device, generator, latents) -> torch.Tensor:
        height, width = size
        channels = pipe.transformer.config.in_channels
        return pipe.prepare_latents(1, channels, height, width, dtype, device, generator, latents)

    def timesteps(self, pipe, num_inference_steps: int, size: tuple[int, int], device) -> torch.Tensor:
        shift = {}
        if pipe.scheduler.config.get("use_dynamic_shifting", None):
            patch = pipe.transformer.config.patch_size
            height, width = (s // pipe.vae_scale_factor for s in size)
            shift["mu"] = calculate_shift((height // patch) * (width // patch), pipe.scheduler.config)
        return retrieve_timesteps(pipe.scheduler, num_inference_steps, device, **shift)[0]

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
        weights = RowWeights(schedules, conditioning.dtype, conditioning.embeds_1.device)

        def denoise(latents: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor:
            inputs = weights.inputs_at(step, lambda tokens, pooled: self.text_inputs(conditioning, tokens, pooled))
            model_input = torch.cat([latents] * 2) if conditioning.guided else latents
            prediction = pipe.transformer(
                hidden_states=model_input, timestep=t.expand(model_input.shape[0]), **inputs, return_dict=False
            )[0]
            if conditioning.guided:
                unconditional, text = prediction.chunk(2)
                prediction = unconditional + guidance.scale * (text - unconditional)
            return prediction

        yield denoise

    def decode(self, pipe, latents: torch.Tensor, output_type: str, size: tuple[int, int]) -> list:
        if output_type == "latent":
            return list(latents)
        vae = pipe.vae
        images = []
        for one in latents.split(1):  # one image at a time: the decoder's activations dominate memory
            one = one / vae.config.scaling_factor + vae.config.shift_factor
            decoded = vae.decode(one, return_dict=False)[0]
            images.extend(pipe.image_processor.postprocess(decoded, output_type=output_type))
        return images
