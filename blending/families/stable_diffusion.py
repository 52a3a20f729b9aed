"""Stable Diffusion 1.x/2.x: one CLIP text encoder, token states only."""

from __future__ import annotations

import torch

from .base import Conditioning, Guidance
from .unet import UNetFamily

__all__ = ["StableDiffusion"]


class StableDiffusion(UNetFamily):
    """``StableDiffusionPipeline``: SD 1.x and 2.x, epsilon or v prediction."""

    name = "Stable Diffusion 1.x/2.x"
    pipeline_class = "StableDiffusionPipeline"
    addition_embed_type = None
    weight_components = ("unet", "vae", "text_encoder")
    load_keywords = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}

    def unsupported(self, pipe, settings) -> str | None:
        if settings.unet_pooled != "ratio":
            return f"unet_pooled: {self.name} has no pooled embedding (SDXL has)"
        return None

    def encode(self, pipe, settings, guidance: Guidance, size: tuple[int, int], device) -> Conditioning:
        guided = guidance.unconditional_rows
        negative = None if settings.negative_prompt is None else [settings.negative_prompt] * 2
        embeds, negative_embeds = pipe.encode_prompt(
            [settings.prompt_1, settings.prompt_2], device, 1, guided, negative
        )
        return Conditioning(embeds[:1], embeds[1:], negative_embeds[:1] if guided else None)

    def decode(self, pipe, latents: torch.Tensor, output_type: str, size: tuple[int, int]) -> list:
        if output_type == "latent":
            return list(latents)
        images = []
        for one in latents.split(1):  # one image at a time: the decoder's activations dominate memory
            decoded = pipe.vae.decode(one / pipe.vae.config.scaling_factor, return_dict=False)[0]
            images.extend(pipe.image_processor.postprocess(decoded, output_type=output_type, do_denormalize=[True]))
        return images
