"""Stock diffusers, the reference the methods are checked against, and the work that goes
through the U-Net.

:func:`stock_one_at_a_time` draws one comparison the plain way, each image by its own stock
``StableDiffusionPipeline`` call: the step weights become prompt embeddings swapped in by
``callback_on_step_end``, the layer weights the same attention processors :func:`blending.blend`
uses, so that it gives the images one batch of :func:`blending.blend` gives.
:func:`count_unet_rows` counts the batch rows that go through a U-Net while something runs, to
hold against the minimum and against :func:`authors_unet_rows`, the authors' strategy (every
blend regenerates both plain images; SWITCH's blend shares the steps before its switch).
"""

from __future__ import annotations

import torch

from ..attention import cross_attention_layout, interpolate, layer_replacements, row_conditioning
from ..methods import METHODS, Schedule, default_switch_step, plain

__all__ = ["authors_unet_rows", "batch_sizes", "count_unet_rows", "stock_one_at_a_time"]


def batch_sizes(module: torch.nn.Module, run) -> list[int]:
    """The batch size of every forward call of ``module`` while ``run()`` runs."""
    sizes = []

    def record(module, args, kwargs, output):
        # a U-Net takes its sample first; the transformers take hidden_states by keyword
        sizes.append((args[0] if args else kwargs["hidden_states"]).shape[0])

    handle = module.register_forward_hook(record, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return sizes


def count_unet_rows(unet: torch.nn.Module, run) -> int:
    """The batch rows that go through ``unet`` while ``run()`` runs."""
    return sum(batch_sizes(unet, run))


def authors_unet_rows(
    num_inference_steps: int, methods=tuple(METHODS), ratio: float = 0.5, guidance: bool = True
) -> int:
    """U-Net rows of the authors' strategy: per method, prompt 1, prompt 2 and the blend anew.

    SWITCH's blend is prompt 1's trajectory until the switch, so only its steps after the switch
    are extra.
    """
    per_step = 2 if guidance else 1
    steps = 0
    for method in methods:
        blend_steps = num_inference_steps
        if method == "switch":
            blend_steps -= default_switch_step(ratio, num_inference_steps)
        steps += 2 * num_inference_steps + blend_steps
    return steps * per_step


def _stock_image(
    pipe,
    schedule: Schedule,
    layout,
    embeds,
    negative,
    seed,
    num_inference_steps,
    guidance_scale,
    height,
    width,
    output_type,
):
    """One image by one stock ``StableDiffusionPipeline`` call that follows ``schedule``.

    The step weights become prompt embeddings swapped in by ``callback_on_step_end``; layer
    weights become the same attention processors :func:`blending.blend` uses.
    """
    embeds_1, embeds_2 = embeds
    step_weights = torch.tensor(schedule.step_weights, dtype=embeds_1.dtype, device=embeds_1.device)
    guided = guidance_scale > 1

    def next_embeds(pipe, step, timestep, tensors):
        if step + 1 < num_inference_steps and step_weights[step + 1] != step_weights[step]:
            conditional = interpolate(embeds_1, embeds_2, step_weights[step + 1 : step + 2])
            return {"prompt_embeds": torch.cat([negative, conditional]) if guided else conditional}
        return {}

    replacements = layer_replacements([schedule], layout, embeds_1, embeds_2, 1 if guided else 0)
    with row_conditioning(pipe.unet, replacements):
        return pipe(
            prompt_embeds=interpolate(embeds_1, embeds_2, step_weights[:1]),
            negative_prompt_embeds=negative,
            generator=torch.Generator("cpu").manual_seed(seed),
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            height=height,
            width=width,
            output_type=output_type,
            callback_on_step_end=next_embeds,
        ).images[0]


@torch.no_grad()
def stock_one_at_a_time(
    pipe,
    prompt_1,
    prompt_2,
    methods=tuple(METHODS),
    ratio=0.5,
    *,
    seed=0,
    num_inference_steps=25,
    guidance_scale=7.5,
    height=None,
    width=None,
    output_type="pil",
) -> dict[str, object]:
    """The images of one comparison, each by its own stock pipeline call (the baseline)."""
    device = pipe._execution_device
    prompt_embeds, negative_embeds = pipe.encode_prompt([prompt_1, prompt_2], device, 1, guidance_scale > 1)
    embeds = (prompt_embeds[:1], prompt_embeds[1:])
    negative = None if negative_embeds is None else negative_embeds[:1]
    layout = cross_attention_layout(pipe.unet)
    schedules = {"prompt_1": plain(0.0, num_inference_steps), "prompt_2": plain(1.0, num_inference_steps)}
    schedules |= {m: METHODS[m](ratio, num_inference_steps, layout, None) for m in methods}
    return {
        name: _stock_image(
            pipe, s, layout, embeds, negative, seed, num_inference_steps, guidance_scale, height, width, output_type
        )
        for name, s in schedules.items()
    }
