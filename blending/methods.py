"""The four blending methods, as schedules.

A schedule says which prompt one image of the batch sees: the weight of prompt 2 at every
denoising step and, for UNET, at every cross-attention layer of the U-Net. The denoising loop
(:func:`blending.blend`) knows nothing of the methods; it only reads schedules. Every method is a
function with the same signature, ``(ratio, num_inference_steps, layout, switch_step=None)``,
returning a :class:`Schedule`; ``ratio`` is always the weight of prompt 2 (0 gives exactly
prompt 1's image, 1 exactly prompt 2's).

The methods are those of Olearo, Longari, Melzi, Raganato and Peñaloza, "How to Blend Concepts in
Diffusion Models" (KMG@ECCV 2024, arXiv:2407.14280), extended in "Blending Concepts with
Text-to-Image Diffusion Models" (arXiv:2506.23630).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "METHODS",
    "UNET_POOLED",
    "CrossAttentionLayout",
    "Schedule",
    "alternate",
    "default_switch_step",
    "plain",
    "schedule_of",
    "switch",
    "textual",
    "unet",
]


@dataclass(frozen=True)
class CrossAttentionLayout:
    """The cross-attention layers of a U-Net in forward order.

    ``names`` are the attention-processor names (as in ``unet.attn_processors``) of the
    cross-attention layers, down blocks first, then the mid block, then the up blocks;
    ``num_encoder_layers`` counts those in the down blocks and the mid block.
    """

    names: tuple[str, ...]
    num_encoder_layers: int

    @property
    def num_layers(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Schedule:
    """Which prompt one image sees.

    ``step_weights[i]`` is the weight of prompt 2 in the text conditioning at denoising step
    ``i``: the image is conditioned on ``(1 - w) * E(prompt_1) + w * E(prompt_2)``.
    ``layer_weights``, when set, overrides that per cross-attention layer (in the order of
    :class:`CrossAttentionLayout`) at every step. ``pooled_weights``, for families with a pooled
    text embedding (SDXL), is its weight of prompt 2 at every step; ``None``: ``step_weights``.
    """

    step_weights: tuple[float, ...]
    layer_weights: tuple[float, ...] | None = None
    pooled_weights: tuple[float, ...] | None = None


def plain(weight: float, num_inference_steps: int) -> Schedule:
    """One prompt throughout: weight 0 is prompt 1's plain image, weight 1 prompt 2's."""
    return Schedule(step_weights=(float(weight),) * num_inference_steps)


def default_switch_step(ratio: float, num_inference_steps: int) -> int:
    """SWITCH's step for a ratio: ``round(num_inference_steps * (1 - ratio))``.

    Python's ``round``, as in the authors' code: 12 of 25 steps at ratio 0.5. (The paper-era
    configuration switched at step 10; pass ``switch_step=10`` for that.)
    """
    return round(num_inference_steps * (1 - ratio))


def textual(
    ratio: float, num_inference_steps: int, layout: CrossAttentionLayout, switch_step: int | None = None
) -> Schedule:
    """TEXTUAL: blend in the prompt's latent space.

    The blend is conditioned, at every step and in every layer, on the linear interpolation of
    the two prompts' text-encoder hidden states, ``(1 - ratio) * E(p1) + ratio * E(p2)``, over
    the full token sequence; the unconditional embedding of classifier-free guidance is left as
    it is.
    """
    return plain(ratio, num_inference_steps)


def switch(
    ratio: float, num_inference_steps: int, layout: CrossAttentionLayout, switch_step: int | None = None
) -> Schedule:
    """SWITCH: start denoising with the first concept, then switch to the second.

    Prompt 1 conditions the first ``switch_step`` denoising steps, which lay out the image,
    and prompt 2 the remaining ones, which fill in its details. It is one trajectory: the
    sampler's state carries across the switch. ``switch_step`` defaults to
    :func:`default_switch_step`.
    """
    if switch_step is None:
        switch_step = default_switch_step(ratio, num_inference_steps)
    return Schedule(step_weights=tuple(0.0 if i < switch_step else 1.0 for i in range(num_inference_steps)))


def alternate(
    ratio: float, num_inference_steps: int, layout: CrossAttentionLayout, switch_step: int | None = None
) -> Schedule:
    """ALTERNATE: alternate the two prompts from one denoising step to the next.

    In the paper, prompt 1 conditions the even steps (0, 2, 4, ...) and prompt 2 the odd ones.
    For another ratio, prompt 2 takes a fraction ``ratio`` of the steps, spread evenly: step
    ``i`` uses prompt 2 exactly when ``floor((i + 1) * ratio) > floor(i * ratio)``.
    """
    # exact arithmetic on the fraction the user meant (1/3, not its binary approximation)
    exact_ratio = Fraction(ratio).limit_denominator(10**6)
    return Schedule(
        step_weights=tuple(
            1.0 if math.floor((i + 1) * exact_ratio) > math.floor(i * exact_ratio) else 0.0
            for i in range(num_inference_steps)
        )
    )


def unet_layers_for_prompt_2(ratio: float, layout: CrossAttentionLayout) -> int:
    """How many cross-attention layers, counted from the U-Net's output end, see prompt 2.

    0 at ratio 0, every up-block layer at ratio 0.5 (the paper's split), all layers at ratio 1;
    linear in between on each side of 0.5, hence monotone in ``ratio``.
    """
    num_decoder_layers = layout.num_layers - layout.num_encoder_layers
    if ratio <= 0.5:
        return round(2 * ratio * num_decoder_layers)
    return num_decoder_layers + round((2 * ratio - 1) * layout.num_encoder_layers)


def unet(
    ratio: float, num_inference_steps: int, layout: CrossAttentionLayout, switch_step: int | None = None
) -> Schedule:
    """UNET: encode with the first concept, decode with the second.

    At every denoising step, the cross-attention layers of the U-Net's encoder (its down blocks
    and mid block) see prompt 1 and those of its decoder (the up blocks) see prompt 2. Other
    ratios move the split along the forward order of the cross-attention layers, see
    :func:`unet_layers_for_prompt_2`.
    """
    num_prompt_2 = unet_layers_for_prompt_2(ratio, layout)
    num_prompt_1 = layout.num_layers - num_prompt_2
    return Schedule(
        step_weights=(0.0,) * num_inference_steps,
        layer_weights=(0.0,) * num_prompt_1 + (1.0,) * num_prompt_2,
        # SDXL's pooled embedding reaches every block through the time embedding, so it cannot
        # follow the split: it gets the weight ``ratio`` (see BlendSettings.unet_pooled)
        pooled_weights=(float(ratio),) * num_inference_steps,
    )


#: What UNET may give SDXL's pooled embedding (``BlendSettings.unet_pooled``), the weight
#: ``ratio`` or one prompt's at every ratio.
UNET_POOLED = ("ratio", "prompt_1", "prompt_2")

MethodFn = Callable[[float, int, CrossAttentionLayout, "int | None"], Schedule]

#: The blending methods by name, in the paper's order.
METHODS: dict[str, MethodFn] = {
    "textual": textual,
    "switch": switch,
    "unet": unet,
    "alternate": alternate,
}


def schedule_of(
    method: str,
    ratio: float,
    num_inference_steps: int,
    layout: CrossAttentionLayout | None,
    *,
    switch_step: int | None = None,
    unet_pooled: str = "ratio",
) -> Schedule:
    """The schedule of ``method`` with its own options: SWITCH's ``switch_step`` and UNET's
    ``unet_pooled`` (see :class:`~blending.settings.BlendSettings`); the others take none."""
    schedule = METHODS[method](ratio, num_inference_steps, layout, switch_step)
    if method == "unet" and unet_pooled != "ratio":
        # a pooled embedding reaches every block through the time embedding, so UNET cannot split
        # it between the U-Net's halves: one prompt's at every step
        weight = 0.0 if unet_pooled == "prompt_1" else 1.0
        schedule = Schedule(schedule.step_weights, schedule.layer_weights, (weight,) * num_inference_steps)
    return schedule
