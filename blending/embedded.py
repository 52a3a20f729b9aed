"""Tiny Stable-Diffusion-shaped pipelines with random weights, built in code, for tests.

They draw noise, not pictures, but they exercise every method on two U-Net shapes in a fraction
of a second. (The embedded model that ships with the package is trained: see
:mod:`blending.toy.train`.)
"""

from __future__ import annotations

import torch

__all__ = [
    "SD_SCHEDULER_CONFIG",
    "byte_level_alphabet",
    "clip_tokenizer",
    "small_text_encoder",
    "tiny_pipeline",
    "tiny_tokenizer",
]

# The noise schedule Stable Diffusion v1.x was trained with.
SD_SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
)


def byte_level_alphabet() -> list[str]:
    """The 256 characters that byte-level BPE (GPT-2, CLIP) uses for the 256 byte values."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    codes = {b: b for b in printable} | {b: 256 + n for n, b in enumerate(others)}
    return [chr(codes[b]) for b in range(256)]


def tiny_tokenizer(model_max_length: int = 77):
    """A CLIP tokenizer whose vocabulary is the byte alphabet: every word is spelled out."""
    alphabet = byte_level_alphabet()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in alphabet:
            vocab[char + suffix] = len(vocab)
    return clip_tokenizer(vocab, [], model_max_length)


def clip_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]], model_max_length: int):
    """transformers 5's ``CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=...)``.

    transformers 4's ``CLIPTokenizer`` reads only vocab and merges files, so there the same
    tokenizers pipeline (normalizer, pre-tokenizer, BPE, post-processor, decoder) is built here
    and wrapped in ``CLIPTokenizerFast``: the same ids for every text.
    """
    import transformers

    if transformers.__version__.split(".")[0] != "4":
        return transformers.CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers import CLIPTokenizerFast

    bos, eos = "<|startoftext|>", "<|endoftext|>"
    backend = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix="</w>",
            fuse_unk=False,
            unk_token=eos,
        )
    )
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(
                    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
                ),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.RobertaProcessing((eos, vocab[eos]), (bos, vocab[bos]), False, False)
    return CLIPTokenizerFast(
        tokenizer_object=backend,
        unk_token=eos,
        bos_token=bos,
        eos_token=eos,
        pad_token=eos,
        model_max_length=model_max_length,
    )


def small_text_encoder(tokenizer, width: int):
    """A 2-layer CLIP text encoder of ``width`` over ``tokenizer``'s vocabulary and window."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=width,
            intermediate_size=2 * width,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            projection_dim=width,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


def tiny_pipeline(variant: str = "sd1", seed: int = 0):
    """A tiny ``StableDiffusionPipeline`` with random weights drawn under ``seed``.

    ``"sd1"`` mirrors SD 1.x's block layout (conv projections, one head size); ``"sd2"`` mirrors
    SD 2.x's (linear projections, per-block head dims, a wider text encoder). 64x64 images.
    """
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel, UniPCMultistepScheduler

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
