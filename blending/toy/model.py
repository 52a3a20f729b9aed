"""The toy text-to-image model: Stable Diffusion's classes at a size a laptop CPU trains.

An ``AutoencoderKL`` (64x64 pictures to 4x8x8 latents), a CLIP text encoder with a word-level
BPE tokenizer over the world's vocabulary, a ``UNet2DConditionModel`` wired like SD 1.x (its
16 cross-attention layers: 6 in the down blocks, 1 in the mid block, 9 in the up blocks), and
the SD noise schedule.
"""

from __future__ import annotations

import torch

from ..testing.components import SD_SCHEDULER_CONFIG, byte_level_alphabet, clip_tokenizer, small_text_encoder
from .world import COLOURS, SHAPES, SIZES

__all__ = ["MAX_TOKENS", "VOCABULARY", "build_text_encoder", "build_tokenizer", "build_unet", "build_vae"]

#: Every word a caption uses; other words still tokenize, letter by letter.
VOCABULARY = ("a", "an", "object", *SHAPES, *COLOURS, *SIZES)
#: Captions are short: "a large red circle" is 6 tokens with the start and end tokens.
MAX_TOKENS = 16
TEXT_WIDTH = 64


def build_tokenizer():
    """A CLIP tokenizer whose merges spell every word of :data:`VOCABULARY` as one token."""
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in byte_level_alphabet():
            vocab[char + suffix] = len(vocab)
    merges: list[tuple[str, str]] = []
    # Add merges until each word is one token. A new merge joins the first two pieces that the
    # merges so far leave, so it never fights an earlier one (BPE applies merges by rank).
    while True:
        tokenizer = clip_tokenizer(dict(vocab), list(merges), MAX_TOKENS)
        unfinished = [tokenizer.tokenize(word) for word in VOCABULARY]
        unfinished = [pieces for pieces in unfinished if len(pieces) > 1]
        if not unfinished:
            return tokenizer
        for pieces in unfinished:
            if (pieces[0], pieces[1]) not in merges:
                merges.append((pieces[0], pieces[1]))
                vocab.setdefault(pieces[0] + pieces[1], len(vocab))


def build_vae():
    """64x64 pictures to 4x8x8 latents: Stable Diffusion's factor of 8."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 64, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=64,
    )


def build_text_encoder(tokenizer):
    return small_text_encoder(tokenizer, TEXT_WIDTH)


def build_unet():
    """Stable Diffusion v1.x's U-Net wiring at toy width.

    The same block types in the same order as SD v1.x (``models/sd-v1-4-architecture.json``):
    three ``CrossAttnDownBlock2D`` and a ``DownBlock2D``, a cross-attention mid block, an
    ``UpBlock2D`` and three ``CrossAttnUpBlock2D``, two layers per block. So there are 16
    cross-attention layers, 6 in the down blocks, 1 in the mid block and 9 in the up blocks, at
    the three finest resolutions, as in SD. Only the widths (SD: 320, 640, 1280, 1280) and the
    latent grid (SD: 64x64, here 8x8, so the blocks run at 8, 4, 2 and 1) are smaller.
    """
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 64, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=4,
        norm_num_groups=32,
    )


def build_noise_scheduler():
    """The training noise schedule: Stable Diffusion v1.x's."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SD_SCHEDULER_CONFIG)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
