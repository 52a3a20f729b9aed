"""Building blocks of Stable-Diffusion-shaped models: SD's noise schedule and the flow-matching
schedules of SD3 and FLUX.1, CLIP tokenizers over any vocabulary, small CLIP text encoders, a
T5 tokenizer over a character vocabulary and small T5 encoders, and the published
architectures of SD v1.4 and SDXL base as configurations.

The embedded toy model (:mod:`blending.toy.model`) and the random test pipelines
(:mod:`blending.testing.pipelines`) are built from them.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = [
    "ARCHITECTURES",
    "FLUX_DEV_SCHEDULER_CONFIG",
    "FLUX_SCHNELL_SCHEDULER_CONFIG",
    "SD3_SCHEDULER_CONFIG",
    "SD_SCHEDULER_CONFIG",
    "architecture",
    "byte_level_alphabet",
    "clip_tokenizer",
    "small_t5_encoder",
    "small_text_encoder",
    "t5_tokenizer",
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

# The flow-matching schedules (``FlowMatchEulerDiscreteScheduler``) that SD3 medium and FLUX.1
# ship with. SD3 shifts every schedule by 3; FLUX.1 dev shifts by the image's token count
# (``mu`` interpolated between base_shift at base_image_seq_len and max_shift at
# max_image_seq_len), and FLUX.1 schnell, distilled for few steps, does not shift at all.
SD3_SCHEDULER_CONFIG = dict(num_train_timesteps=1000, shift=3.0)
FLUX_DEV_SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    shift=3.0,
    use_dynamic_shifting=True,
    base_shift=0.5,
    max_shift=1.15,
    base_image_seq_len=256,
    max_image_seq_len=4096,
)
FLUX_SCHNELL_SCHEDULER_CONFIG = dict(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)


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


def t5_tokenizer(model_max_length: int = 512):
    """A ``T5TokenizerFast`` whose Unigram vocabulary is T5's specials and printable ASCII.

    T5's special ids (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2), then ``▁`` (a word boundary), every
    printable ASCII character, and every one of them after a word boundary (``▁l``): every word
    is spelled out, "lion" as ``▁l i o n </s>``, so different words get different ids. The
    pipeline is T5's: whitespace split and a ``▁`` prepended to each word (Metaspace), the same
    decoder, and ``</s>`` appended to every sequence. No sentinel (``<extra_id_N>``) tokens; other
    characters are ``<unk>``. ``model_max_length`` 512, as FLUX.1's and SD3's T5 tokenizers.

    Built with ``tokenizer_object`` so that transformers 4 (``T5TokenizerFast``) and 5 (where it
    names ``T5Tokenizer``, which keeps a given backend and sets the same post-processor) give the
    same ids.
    """
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from transformers import T5TokenizerFast

    pad, eos, unk, boundary = "<pad>", "</s>", "<unk>", "▁"
    chars = [chr(c) for c in range(ord("!"), ord("~") + 1)]
    # a piece after a word boundary scores above the boundary and the piece apart, so it is chosen
    vocab = [(pad, 0.0), (eos, 0.0), (unk, 0.0), (boundary, -3.0)]
    vocab += [(boundary + char, -1.0) for char in chars] + [(char, -2.0) for char in chars]
    backend = Tokenizer(Unigram(vocab, unk_id=2, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement=boundary, prepend_scheme="always", split=True),
        ]
    )
    backend.decoder = decoders.Metaspace(replacement=boundary, prepend_scheme="always", split=True)
    backend.post_processor = processors.TemplateProcessing(
        single=["$A", eos], pair=["$A", eos, "$B", eos], special_tokens=[(eos, 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=backend,
        eos_token=eos,
        unk_token=unk,
        pad_token=pad,
        extra_ids=0,
        model_max_length=model_max_length,
    )


def small_t5_encoder(
    tokenizer, width: int, *, num_layers: int = 2, num_heads: int = 4, initializer_factor: float = 1.0
):
    """A T5 v1.1-shaped encoder (``T5EncoderModel``: gated-GELU feed-forward, relative position
    buckets, RMS norms, no dropout) of ``width`` over ``tokenizer``'s vocabulary, as FLUX.1 and
    SD3 use T5-XXL's: ``num_layers`` layers of ``num_heads`` heads. ``initializer_factor``
    scales T5's random initialisation; the weights are drawn from torch's global generator, so
    seed it first for the same encoder every time."""
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=width,
            d_kv=width // num_heads,
            d_ff=2 * width,
            num_layers=num_layers,
            num_heads=num_heads,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=32,
            feed_forward_proj="gated-gelu",
            dropout_rate=0.0,
            is_encoder_decoder=False,
            use_cache=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
            initializer_factor=float(initializer_factor),  # transformers 5's configs reject an int
        )
    ).eval()
