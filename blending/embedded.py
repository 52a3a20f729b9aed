"""Tiny Stable-Diffusion-shaped models built in code, and the embedded model that ships as files.

The embedded model (``load_pipeline("embedded")``) is an SD-1.x-shaped pipeline with fixed random
weights: it draws noise, not pictures, but it runs every method on any machine, and it loads
through the same ``from_pretrained`` code as a real checkpoint. Rebuild its files with
``python -m blending.embedded``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

__all__ = ["tiny_pipeline", "tiny_tokenizer", "write_embedded_model"]

logger = logging.getLogger(__name__)

# The noise schedule Stable Diffusion v1.x was trained with.
SD_SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
)


def _byte_level_alphabet() -> list[str]:
    """The 256 characters that byte-level BPE (GPT-2, CLIP) uses for the 256 byte values."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    codes = {b: b for b in printable} | {b: 256 + n for n, b in enumerate(others)}
    return [chr(codes[b]) for b in range(256)]


def tiny_tokenizer(model_max_length: int = 77):
    """A CLIP tokenizer whose vocabulary is the byte alphabet: every word is spelled out."""
    from transformers import CLIPTokenizer

    alphabet = _byte_level_alphabet()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in alphabet:
            vocab[char + suffix] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def tiny_pipeline(variant: str = "sd1", seed: int = 0):
    """A tiny ``StableDiffusionPipeline`` with random weights drawn under ``seed``.

    ``"sd1"`` mirrors SD 1.x's block layout (conv projections, one head size); ``"sd2"`` mirrors
    SD 2.x's (linear projections, per-block head dims, a wider text encoder). 64x64 images.
    """
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel, UniPCMultistepScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    if variant not in ("sd1", "sd2"):
        raise ValueError(f"variant must be 'sd1' or 'sd2', got {variant!r}")
    sd2 = variant == "sd2"
    text_width = 64 if sd2 else 32
    tokenizer = tiny_tokenizer()

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=text_width,
        attention_head_dim=(2, 4, 4) if sd2 else 8,
        use_linear_projection=sd2,
        norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=64,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=text_width,
            intermediate_size=2 * text_width,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            projection_dim=text_width,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
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


def write_embedded_model(folder: Path | None = None) -> Path:
    """Write the embedded model's files (safetensors weights, configs, tokenizer) to ``folder``.

    ``folder`` defaults to the package's own copy, which ``load_pipeline("embedded")`` reads.
    """
    from .loading import EMBEDDED_PATH

    folder = EMBEDDED_PATH if folder is None else folder
    pipe = tiny_pipeline("sd1", seed=0)
    pipe.save_pretrained(folder, safe_serialization=True)
    logger.info("wrote the embedded model to %s", folder)
    return folder


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder to write (default: the package's)")
    logging.basicConfig(level=logging.INFO)
    write_embedded_model(parser.parse_args().out)
