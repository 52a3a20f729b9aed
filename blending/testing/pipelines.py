"""Tiny Stable-Diffusion-shaped pipelines with random weights, built in code, for tests.

They draw noise, not pictures, but they exercise every method on SD 1.x, SD 2.x and SDXL
shapes in a fraction of a second. (The embedded model that ships with the package is trained:
see :mod:`blending.toy.train`.)
"""

from __future__ import annotations

import torch

from .components import SD_SCHEDULER_CONFIG, byte_level_alphabet, clip_tokenizer, small_text_encoder

__all__ = ["tiny_pipeline", "tiny_sdxl_pipeline", "tiny_tokenizer"]

# What every tiny U-Net shares: 8x8 latents of 4 channels (64x64 images), SD's group norm.
_TINY_UNET = dict(sample_size=8, in_channels=4, out_channels=4, norm_num_groups=32)


def tiny_tokenizer(model_max_length: int = 77):
    """A CLIP tokenizer whose vocabulary is the byte alphabet: every word is spelled out."""
    alphabet = byte_level_alphabet()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in alphabet:
            vocab[char + suffix] = len(vocab)
    return clip_tokenizer(vocab, [], model_max_length)


def tiny_pipeline(variant: str = "sd1", seed: int = 0):
    """A tiny ``StableDiffusionPipeline`` with random weights drawn under ``seed``.

    ``"sd1"`` mirrors SD 1.x's block layout (conv projections, one head size); ``"sd2"`` mirrors
    SD 2.x's (linear projections, per-block head dims, a wider text encoder). 64x64 images.
    """
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel, UniPCMultistepScheduler

    if variant not in ("sd1", "sd2"):
        raise ValueError(f"variant must be 'sd1' or 'sd2', got {variant!r}")
    sd2 = variant == "sd2"
    text_width = 64 if sd2 else 32
    tokenizer = tiny_tokenizer()

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        **_TINY_UNET,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=text_width,
        attention_head_dim=(2, 4, 4) if sd2 else 8,
        use_linear_projection=sd2,
    )
    torch.manual_seed(seed + 1)
    vae = _tiny_vae()
    torch.manual_seed(seed + 2)
    text_encoder = small_text_encoder(tokenizer, text_width)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=UniPCMultistepScheduler(**SD_SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _tiny_vae(scaling_factor: float = 0.18215):
    """A 4-block ``AutoencoderKL`` (8x downsampling, as SD's) for 64x64 images."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=64,
        scaling_factor=scaling_factor,
    )


def tiny_sdxl_pipeline(seed: int = 0):
    """A tiny ``StableDiffusionXLPipeline`` with random weights drawn under ``seed``, 64x64 images.

    Shaped like SDXL base: two text encoders (a ``CLIPTextModel`` and a
    ``CLIPTextModelWithProjection``, whose token states are concatenated and whose projection is
    the pooled embedding), a U-Net with ``addition_embed_type="text_time"`` whose blocks are
    SDXL's (a plain down block, two cross-attention down blocks with more transformer layers in
    the deeper one, the mirror image going up), and SDXL's VAE scaling factor. No watermarker.
    """
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel, UniPCMultistepScheduler

    text_width, time_width = 32, 8
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        **_TINY_UNET,
        layers_per_block=2,
        block_out_channels=(32, 32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 1, 2),  # SDXL base: (1, 2, 10)
        attention_head_dim=(2, 2, 4),
        use_linear_projection=True,
        cross_attention_dim=2 * text_width,  # both encoders' token states, concatenated
        addition_embed_type="text_time",
        addition_time_embed_dim=time_width,
        # six size and crop numbers, each embedded in time_width, beside the pooled embedding
        projection_class_embeddings_input_dim=6 * time_width + text_width,
    )
    torch.manual_seed(seed + 1)
    vae = _tiny_vae(scaling_factor=0.13025)  # SDXL's
    # SDXL reads the encoders' penultimate layer, before the final layer norm: from CLIP's default
    # initialisation those states are too small to steer a random U-Net, so these start 4x larger
    torch.manual_seed(seed + 2)
    tokenizer = tiny_tokenizer()
    text_encoder = small_text_encoder(tokenizer, text_width, initializer_factor=4.0)
    torch.manual_seed(seed + 3)
    tokenizer_2 = tiny_tokenizer()
    text_encoder_2 = small_text_encoder(tokenizer_2, text_width, with_projection=True, initializer_factor=4.0)
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet.eval(),
        scheduler=UniPCMultistepScheduler(**SD_SCHEDULER_CONFIG),
        force_zeros_for_empty_prompt=True,  # SDXL base's: no negative prompt is a zero embedding
        add_watermarker=False,
    )
