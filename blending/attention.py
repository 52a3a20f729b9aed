"""Per-layer text conditioning through the U-Net's own attention processors.

UNET blending needs the cross-attention of some layers to see another prompt than the rest of
the U-Net. Rather than copying the U-Net's forward pass, each cross-attention processor is
wrapped by one that swaps, for chosen rows of the batch, the text conditioning it receives, and
then calls the processor it wraps. The U-Net's own processors are put back afterwards, also
when an exception is raised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch

from .methods import CrossAttentionLayout, Schedule

__all__ = [
    "RowConditioningProcessor",
    "cross_attention_layout",
    "interpolate",
    "layer_replacements",
    "row_conditioning",
]

# Where each part of the U-Net sits in its forward pass.
_FORWARD_ORDER = ("down_blocks.", "mid_block.", "up_blocks.")


def cross_attention_layout(unet: torch.nn.Module) -> CrossAttentionLayout:
    """The cross-attention layers of a diffusers ``UNet2DConditionModel``, in forward order."""
    modules = dict(getattr(unet, "_orig_mod", unet).named_modules())  # a torch.compile'd U-Net wraps the module
    grouped: dict[str, list[str]] = {part: [] for part in _FORWARD_ORDER}
    for name in unet.attn_processors:
        module = modules[name.removesuffix(".processor")]
        if not getattr(module, "is_cross_attention", False):
            continue
        part = next((p for p in _FORWARD_ORDER if name.startswith(p)), None)
        if part is None:
            raise ValueError(f"unet: cross-attention layer {name!r} is outside the down, mid and up blocks")
        grouped[part].append(name)
    names = tuple(name for part in _FORWARD_ORDER for name in grouped[part])
    if not names:
        raise ValueError("unet: the U-Net has no cross-attention layers to condition on text")
    return CrossAttentionLayout(
        names=names, num_encoder_layers=len(grouped["down_blocks."]) + len(grouped["mid_block."])
    )


class RowConditioningProcessor:
    """Wraps an attention processor; replaces the text conditioning of some batch rows.

    ``rows`` are indices into the U-Net's batch and ``conditioning`` holds their replacement
    text states, one per row. Everything else goes to the wrapped processor unchanged.
    """

    def __init__(self, processor, rows: torch.Tensor, conditioning: torch.Tensor):
        self.processor = processor
        self.rows = rows
        self.conditioning = conditioning

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, *args, **kwargs):
        encoder_hidden_states = encoder_hidden_states.index_copy(0, self.rows, self.conditioning)
        return self.processor(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


@contextlib.contextmanager
def row_conditioning(
    unet: torch.nn.Module, replacements: Mapping[str, tuple[torch.Tensor, torch.Tensor]]
) -> Iterator[None]:
    """Within the block, the cross-attention layer ``name`` sees ``conditioning`` in ``rows``.

    ``replacements`` maps processor names to ``(rows, conditioning)``. Layers not named keep
    their processor. On exit the U-Net's original processors are restored, exception or not.
    """
    if not replacements:
        yield
        return
    original = unet.attn_processors
    wrapped = {
        name: RowConditioningProcessor(processor, *replacements[name]) if name in replacements else processor
        for name, processor in original.items()
    }
    unet.set_attn_processor(wrapped)
    try:
        yield
    finally:
        # set_attn_processor empties the dict it is given, hence the copy
        unet.set_attn_processor(dict(original))


def interpolate(embeds_1: torch.Tensor, embeds_2: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Rows of ``(1 - w) * embeds_1 + w * embeds_2``, one per weight; exact at w = 0 and w = 1.

    ``embeds_1`` and ``embeds_2`` have one row each: token states (``1 x tokens x width``) or
    pooled embeddings (``1 x width``)."""
    weights = weights.view(-1, *([1] * (embeds_1.dim() - 1)))
    return (1 - weights) * embeds_1 + weights * embeds_2


def layer_replacements(
    schedules: list[Schedule],
    layout: CrossAttentionLayout,
    embeds_1: torch.Tensor,
    embeds_2: torch.Tensor,
    first_row: int,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """For :func:`row_conditioning`: per cross-attention layer, the rows whose text states it replaces.

    ``schedules`` are those of the batch's conditional rows, which start at row ``first_row``
    (after the unconditional rows under classifier-free guidance). Only schedules with
    ``layer_weights`` (UNET blends) get replacements.
    """
    layered = [(first_row + j, s.layer_weights) for j, s in enumerate(schedules) if s.layer_weights is not None]
    if not layered:
        return {}
    rows = torch.tensor([row for row, _ in layered], device=embeds_1.device)
    return {
        name: (
            rows,
            interpolate(
                embeds_1,
                embeds_2,
                torch.tensor([w[layer] for _, w in layered], dtype=embeds_1.dtype, device=embeds_1.device),
            ),
        )
        for layer, name in enumerate(layout.names)
    }
