"""Tiny Stable-Diffusion-shaped pipelines with random weights, built in code, for tests.

They draw noise, not pictures, but they exercise every method on SD 1.x, SD 2.x and SDXL
shapes, and the stock flow-matching pipelines on SD3's and FLUX.1's (dev and schnell), in a
fraction of a second. (The embedded model that ships with the package is trained: see
:mod:`blending.toy.train`.)
"""

from __future__ import annotations

import torch

from .components import (
    FLUX_DEV_SCHEDULER_CONFIG,
    FLUX_SCHNELL_SCHEDULER_CONFIG,
    SD3_SCHEDULER_CONFIG,
    SD_SCHEDULER_CONFIG,
    byte_level_alphabet,
    clip_tokenizer,
    small_t5_encoder,
    small_text_encoder,
    t5_tokenizer,
)

__all__ = ["tiny_flux_pipeline", "tiny_pipeline", "tiny_sd3_pipeline", "tiny_sdxl_pipeline", "tiny_tokenizer"]

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


# SD3 and FLUX.1 read all of T5's token states, padding included (256 and 512 of them), and
# neither masks the padding. From T5's default initialisation the padding states are almost the
# same for every prompt, and the few prompt tokens barely move a random transformer's attention:
# T5's states for "lion" instead of "cat" (the CLIP embeddings kept) moved the 32x32 pictures by
# 2e-4 (FLUX, mean absolute pixel difference in [0, 1]) and 1e-3 (SD3). From a 4x larger one the
# padding states carry the prompt, as a trained T5's do, and T5 moves the pictures by 4e-3 to
# 5e-3 (FLUX) and 5e-2 (SD3, with its guidance scale of 7); another seed of noise moves them by
# about 0.17.
_T5_INITIALIZER_FACTOR = 4.0


def _tiny_flow_vae(scaling_factor: float, shift_factor: float):
    """A 2-block ``AutoencoderKL`` with 16 latent channels, as SD3's and FLUX.1's (no quant
    convs, their latent scaling and shift), but 2x downsampling: 32x32 images, 16x16 latents."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=16,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=32,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def tiny_sd3_pipeline(seed: int = 0):
    """A tiny ``StableDiffusion3Pipeline`` with random weights drawn under ``seed``, 32x32 images.

    Shaped like SD3 medium: two ``CLIPTextModelWithProjection`` encoders of different widths (32
    and 48, as CLIP-L's 768 and CLIP-G's 1280), whose penultimate token states are concatenated
    and zero-padded to the T5 encoder's width (96, as 2048 to T5-XXL's 4096) ahead of T5's tokens,
    and whose projections, concatenated, are the pooled embedding; an ``SD3Transformer2DModel``
    (2 joint blocks of 4 heads of 8, patch 2); a 16-channel VAE with SD3's latent scaling and
    shift; SD3's shifted flow-matching schedule. The transformer's ``sample_size`` (16 latents)
    makes the default image 32x32, and its positional embedding covers images up to 64x64.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    widths, t5_width = (32, 48), 96
    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=16,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=t5_width,
        caption_projection_dim=4 * 8,  # the transformer's width, as SD3's 1152 = 18 x 64
        pooled_projection_dim=sum(widths),  # both projections, concatenated
        pos_embed_max_size=16,
    )
    torch.manual_seed(seed + 1)
    vae = _tiny_flow_vae(scaling_factor=1.5305, shift_factor=0.0609)  # SD3's
    # SD3 reads the CLIP encoders' penultimate layer, as SDXL: these start 4x larger (see tiny_sdxl_pipeline)
    torch.manual_seed(seed + 2)
    tokenizer = tiny_tokenizer()
    text_encoder = small_text_encoder(tokenizer, widths[0], with_projection=True, initializer_factor=4.0)
    torch.manual_seed(seed + 3)
    tokenizer_2 = tiny_tokenizer()
    text_encoder_2 = small_text_encoder(tokenizer_2, widths[1], with_projection=True, initializer_factor=4.0)
    torch.manual_seed(seed + 4)
    tokenizer_3 = t5_tokenizer()
    text_encoder_3 = small_t5_encoder(tokenizer_3, t5_width, initializer_factor=_T5_INITIALIZER_FACTOR)
    return StableDiffusion3Pipeline(
        transformer=transformer.eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(**SD3_SCHEDULER_CONFIG),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )


def tiny_flux_pipeline(variant: str = "dev", seed: int = 0):
    """A tiny ``FluxPipeline`` with random weights drawn under ``seed``, 32x32 images.

    Shaped like FLUX.1: a ``CLIPTextModel`` whose pooled output is the pooled embedding, a T5
    encoder whose token states are the context (widths 32 and 64, as 768 and T5-XXL's 4096), a
    ``FluxTransformer2DModel`` (1 double-stream and 1 single-stream block of 2 heads of 16,
    rotary axes 4 + 6 + 6 = 16 as FLUX.1's 16 + 56 + 56 = 128) over 2x2 patches of 16-channel
    latents (64 inputs), and a 16-channel VAE with FLUX.1's latent scaling and shift.

    ``"dev"`` embeds the guidance scale (``guidance_embeds=True``, guidance-distilled) and shifts
    its schedule by the image size; ``"schnell"`` embeds none and does not shift.

    The pipeline's ``default_sample_size`` is set so that the default image is 32x32: diffusers
    multiplies it by ``vae_scale_factor``, which is 2 ** (len(block_out_channels) - 1) = 2 in
    recent diffusers and 2 ** len(block_out_channels) = 4 (the 2x2 packing folded in) in 0.30.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    if variant not in ("dev", "schnell"):
        raise ValueError(f"variant must be 'dev' or 'schnell', got {variant!r}")
    dev = variant == "dev"
    width, t5_width = 32, 64
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 16 latent channels x 2 x 2, packed
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=t5_width,
        pooled_projection_dim=width,
        guidance_embeds=dev,
        axes_dims_rope=(4, 6, 6),
    )
    torch.manual_seed(seed + 1)
    vae = _tiny_flow_vae(scaling_factor=0.3611, shift_factor=0.1159)  # FLUX.1's
    torch.manual_seed(seed + 2)
    tokenizer = tiny_tokenizer()
    text_encoder = small_text_encoder(tokenizer, width)
    torch.manual_seed(seed + 3)
    tokenizer_2 = t5_tokenizer()
    text_encoder_2 = small_t5_encoder(tokenizer_2, t5_width, initializer_factor=_T5_INITIALIZER_FACTOR)
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(
            **(FLUX_DEV_SCHEDULER_CONFIG if dev else FLUX_SCHNELL_SCHEDULER_CONFIG)
        ),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer.eval(),
    )
    pipe.default_sample_size = 32 // pipe.vae_scale_factor
    return pipe
