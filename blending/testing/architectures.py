"""Random-weight pipelines of the published architectures, for benchmarks: timing and memory
need the real shapes, not the real weights."""

from __future__ import annotations

import torch

from .components import architecture
from .pipelines import tiny_tokenizer

__all__ = ["build_sd_shaped_pipeline"]


def build_sd_shaped_pipeline(
    width_divisor: int = 1, dtype=torch.float32, device="cpu", seed: int = 0, full_text_encoder: bool = False
):
    """Stable Diffusion v1.4's architecture with random weights, its widths divided by ``width_divisor``.

    Divisor 1 is the real size (859.5M U-Net parameters). Timing needs no real weights; the text
    encoder keeps SD's width (768) but has 2 layers and a byte-level vocabulary, unless
    ``full_text_encoder`` asks for all of SD's layers and its vocabulary's size (for memory).
    """
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel, UniPCMultistepScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    def narrow(channels):  # a multiple of the 32 normalisation groups, at least one group
        return [max(32, c // width_divisor // 32 * 32) for c in channels]

    config = architecture("sd-v1-4")
    unet_config = dict(config["unet"], block_out_channels=narrow(config["unet"]["block_out_channels"]))
    vae_config = dict(config["vae"], block_out_channels=narrow(config["vae"]["block_out_channels"]))
    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**vae_config),
        text_encoder=CLIPTextModel(
            CLIPTextConfig(
                **dict(
                    config["text_encoder"],
                    **({} if full_text_encoder else {"num_hidden_layers": 2, "vocab_size": len(tokenizer)}),
                    bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id,
                )
            )
        ),
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**unet_config),
        scheduler=UniPCMultistepScheduler.from_config(config["scheduler"]),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.register_to_config(_name_or_path=f"sd-v1-4-architecture/{width_divisor} (random weights)")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device=device, dtype=dtype)
