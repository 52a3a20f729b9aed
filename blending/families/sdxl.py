"""SDXL: two text encoders whose token states are concatenated; the second one's pooled embedding
and six size/crop numbers enter the U-Net through its time embedding."""

from __future__ import annotations

import torch

from .base import Conditioning, Guidance
from .unet import UNetFamily

__all__ = ["StableDiffusionXL"]


class StableDiffusionXL(UNetFamily):
    """``StableDiffusionXLPipeline``: SDXL base, text to image (the refiner is an img2img pipeline)."""

    name = "SDXL"
    pipeline_class = "StableDiffusionXLPipeline"
    addition_embed_type = "text_time"
    weight_components = ("unet", "vae", "text_encoder", "text_encoder_2")

    def encode(self, pipe, settings, guidance: Guidance, size: tuple[int, int], device) -> Conditioning:
        guided = guidance.unconditional_rows
        negative = None if settings.negative_prompt is None else [settings.negative_prompt] * 2
        embeds, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
            prompt=[settings.prompt_1, settings.prompt_2],
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=guided,
            negative_prompt=negative,
        )
        # stock SDXL's defaults: original_size = target_size = the image size, no crop
        projection_dim = (
            int(pooled.shape[-1]) if pipe.text_encoder_2 is None else pipe.text_encoder_2.config.projection_dim
        )
        time_ids = pipe._get_add_time_ids(
            tuple(size), (0, 0), tuple(size), dtype=embeds.dtype, text_encoder_projection_dim=projection_dim
        )
        return Conditioning(
            embeds[:1],
            embeds[1:],
            negative_embeds[:1] if guided else None,
            pooled[:1],
            pooled[1:],
            negative_pooled[:1] if guided else None,
            {"time_ids": time_ids.to(device)},
        )

    def unet_inputs(
        self, conditioning: Conditioning, token_weights: torch.Tensor, pooled_weights: torch.Tensor
    ) -> dict:
        pooled = conditioning.pooled(pooled_weights)
        time_ids = conditioning.extras["time_ids"].expand(len(pooled), -1)
        return {
            "encoder_hidden_states": conditioning.token_states(token_weights),
            "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids},
        }

    def decode(self, pipe, latents: torch.Tensor, output_type: str, size: tuple[int, int]) -> list:
        if output_type == "latent":
            return list(latents)
        vae = pipe.vae
        # SDXL's VAE overflows in float16: decode in float32, as StableDiffusionXLPipeline does
        upcast = vae.dtype == torch.float16 and vae.config.force_upcast
        if upcast:
            vae.to(torch.float32)
        images = []
        try:
            mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
            # one image at a time: at 1024x1024 in float32 the decoder's activations take gigabytes per image
            for one in latents.split(1):
                one = one.to(vae.dtype)
                if mean is not None and std is not None:
                    shape = (1, len(mean), 1, 1)
                    one = one * torch.tensor(std).view(shape).to(one) / vae.config.scaling_factor + torch.tensor(
                        mean
                    ).view(shape).to(one)
                else:
                    one = one / vae.config.scaling_factor
                decoded = vae.decode(one, return_dict=False)[0]
                if getattr(pipe, "watermark", None) is not None:
                    decoded = pipe.watermark.apply_watermark(decoded)
                images.extend(pipe.image_processor.postprocess(decoded, output_type=output_type))
        finally:
            if upcast:
                vae.to(torch.float16)
        return images
