"""UNET's routing, checked without our layer bookkeeping: forward pre-hooks on the key projection
of every cross-attention layer record the text states each layer really receives, and each UNET
row must receive prompt 1's in the down and mid blocks and prompt 2's in the up blocks."""

import pytest
import torch

from blending import blend

from .conftest import STEPS


def _text_inputs_per_layer(unet, run) -> dict[str, list[torch.Tensor]]:
    """Per cross-attention module of ``unet`` (by name), what its key projection received, per call."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, module in unet.named_modules():
        if getattr(module, "is_cross_attention", False):
            seen[name] = []
            handles.append(
                module.to_k.register_forward_pre_hook(lambda _, args, name=name: seen[name].append(args[0].clone()))
            )
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return seen


@pytest.mark.parametrize("ratio, encoder, decoder", [(0.5, "prompt_1", "prompt_2"), (0.0, "prompt_1", "prompt_1")])
def test_unet_rows_see_prompt_1_in_the_encoder_and_prompt_2_in_the_decoder(unet_pipe, ratio, encoder, decoder):
    methods = ("textual", "unet")
    seen = _text_inputs_per_layer(
        unet_pipe.unet,
        lambda: blend(unet_pipe, "lion", "cat", methods, ratio, seed=3, num_inference_steps=STEPS, progress=False),
    )
    images = 2 + len(methods)
    # rows: the unconditional ones, then prompt 1, prompt 2, textual, unet
    row = {"prompt_1": images + 0, "prompt_2": images + 1}
    unet_row = images + 3
    assert len(seen) > 0
    for name, calls in seen.items():
        expected = encoder if name.startswith(("down_blocks", "mid_block")) else decoder
        assert name.startswith(("down_blocks", "mid_block", "up_blocks")), name
        assert len(calls) == STEPS
        for states in calls:
            assert torch.equal(states[unet_row], states[row[expected]]), (name, expected)
            other = row["prompt_2" if expected == "prompt_1" else "prompt_1"]
            assert not torch.equal(states[unet_row], states[other]), name
