"""Building blocks of Stable-Diffusion-shaped models: SD's noise schedule, CLIP tokenizers over
any vocabulary, small CLIP text encoders, and the published architectures of SD v1.4 and SDXL
base as configurations.

The embedded toy model (:mod:`blending.toy.model`) and the random test pipelines
(:mod:`blending.testing.pipelines`) are built from them.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = [
    "ARCHITECTURES",
    "SD_SCHEDULER_CONFIG",
    "architecture",
    "byte_level_alphabet",
    "clip_tokenizer",
    "small_text_encoder",
    "unet_skeleton",
]

#: Published architectures, as configurations (``blending/models/NAME-architecture.json``).
ARCHITECTURES = ("sd-v1-4", "sdxl-base-1.0")


def architecture(name: str) -> dict:
    """The configurations of one of :data:`ARCHITECTURES`: ``unet``, ``vae``, text encoders,
    ``scheduler`` and ``facts``."""
    if name not in ARCHITECTURES:
        raise ValueError(f"name must be one of {list(ARCHITECTURES)}, got {name!r}")
    return json.loads((Path(__file__).parent.parent / "models" / f"{name}-architecture.json").read_text())


def unet_skeleton(name: str):
    """The U-Net of one of :data:`ARCHITECTURES` built without weights (on the meta device): its
    layout at no memory cost."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    with init_empty_weights():
        return UNet2DConditionModel(**architecture(name)["unet"])


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


def small_text_encoder(tokenizer, width: int, *, with_projection: bool = False, initializer_factor: float = 1.0):
    """A 2-layer CLIP text encoder of ``width`` over ``tokenizer``'s vocabulary and window; with
    ``with_projection``, a ``CLIPTextModelWithProjection`` (SDXL's second encoder, which also
    gives the pooled embedding). ``initializer_factor`` scales CLIP's random initialisation."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(
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
            initializer_factor=initializer_factor,
        )
    )
