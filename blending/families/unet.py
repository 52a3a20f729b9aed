"""What the U-Net families (SD 1.x/2.x and SDXL) share: the guided U-Net call and UNET's layers.

The U-Net is called as the stock pipelines call it: the scheduler scales its input, the
unconditional rows come first under classifier-free guidance, and the guided prediction is
``uncond + scale * (text - uncond)``. UNET's layers are the U-Net's cross-attention layers
(:func:`~blending.attention.cross_attention_layout`); the rows of UNET blends get their text
states per layer through the U-Net's own attention processors (:mod:`blending.attention`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import retrieve_timesteps

from ..attention import cross_attention_layout, layer_replacements, row_conditioning
from ..errors import InputError
from ..methods import CrossAttentionLayout, Schedule
from .base import Conditioning, Denoiser, Family, Guidance, RowWeights

__all__ = ["UNetFamily"]

#: The paper's guidance scale, every U-Net family's default.
PAPER_GUIDANCE_SCALE = 7.5


class UNetFamily(Family):
    """A family whose denoising network is a ``UNet2DConditionModel`` with cross-attention on text."""

    #: The U-Net's ``addition_embed_type`` the family needs.
    addition_embed_type: str | None
    network_name = "U-Net"
    #: The paper's scheduler.
    default_scheduler = "UniPCMultistepScheduler"

    def network(self, pipe) -> torch.nn.Module:
        return pipe.unet

    def check_pipeline(self, pipe) -> None:
        from . import SUPPORTED

        unet = pipe.unet.config
        if unet.in_channels != pipe.vae.config.latent_channels:
            raise InputError(
                f"pipe: its U-Net takes {unet.in_channels} input channels, not the VAE's "
                f"{pipe.vae.config.latent_channels} (an inpainting U-Net?); blending needs {SUPPORTED}"
            )
        if getattr(unet, "addition_embed_type", None) != self.addition_embed_type:
            raise InputError(
                f"pipe: its U-Net's addition_embed_type is {getattr(unet, 'addition_embed_type', None)!r}, "
                f"{self.name} needs {self.addition_embed_type!r}; blending needs {SUPPORTED}"
            )
        for key in ("class_embed_type", "time_cond_proj_dim"):
            if getattr(unet, key, None) is not None:
                raise InputError(
                    f"pipe: its U-Net expects conditioning besides the text ({key}={getattr(unet, key)!r}); "
                    f"blending needs {SUPPORTED}"
                )

    def guidance(self, pipe, guidance_scale: float | None) -> Guidance:
        scale = PAPER_GUIDANCE_SCALE if guidance_scale is None else float(guidance_scale)
        return Guidance(scale, "classifier-free")

    def default_size(self, pipe) -> tuple[int, int]:
        size = pipe.unet.config.sample_size * pipe.vae_scale_factor
        return size, size

    def layer_layout(self, pipe) -> CrossAttentionLayout:
        return cross_attention_layout(pipe.unet)

    def latents_shape(self, pipe, size: tuple[int, int]) -> tuple[int, ...]:
        height, width = size
        return (1, pipe.unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)

    def initial_latents(self, pipe, size, dtype, device, generator, latents) -> torch.Tensor:
        height, width = size
        return pipe.prepare_latents(1, pipe.unet.config.in_channels, height, width, dtype, device, generator, latents)

    def timesteps(self, pipe, num_inference_steps: int, size: tuple[int, int], device) -> torch.Tensor:
        return retrieve_timesteps(pipe.scheduler, num_inference_steps, device)[0]

    def unet_inputs(
        self, conditioning: Conditioning, token_weights: torch.Tensor, pooled_weights: torch.Tensor
    ) -> dict:
        """The U-Net's conditioning keywords for rows weighing prompt 2 as given (unconditional rows first)."""
        return {"encoder_hidden_states": conditioning.token_states(token_weights)}

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
        first_conditional_row = len(schedules) if conditioning.guided else 0  # after the unconditional rows
        replacements = layer_replacements(
            schedules, layout, conditioning.embeds_1, conditioning.embeds_2, first_conditional_row
        )

        def denoise(latents: torch.Tensor, t: torch.Tensor, step: int) -> torch.Tensor:
            inputs = weights.inputs_at(step, lambda tokens, pooled: self.unet_inputs(conditioning, tokens, pooled))
            model_input = torch.cat([latents] * 2) if conditioning.guided else latents
            model_input = pipe.scheduler.scale_model_input(model_input, t)
            prediction = pipe.unet(model_input, t, **inputs, return_dict=False)[0]
            if conditioning.guided:
                unconditional, text = prediction.chunk(2)
                prediction = unconditional + guidance.scale * (text - unconditional)
            return prediction

        with row_conditioning(pipe.unet, replacements):
            yield denoise
