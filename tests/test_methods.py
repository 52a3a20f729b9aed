"""The schedules: which prompt each method gives at each step and layer."""

import pytest

from blending.methods import (
    METHODS,
    CrossAttentionLayout,
    alternate,
    default_switch_step,
    switch,
    textual,
    unet,
    unet_layers_for_prompt_2,
)

# SD v1.4: 6 cross-attention layers in the down blocks, 1 in the mid block, 9 in the up blocks.
SD14 = CrossAttentionLayout(names=tuple(f"layer{i}" for i in range(16)), num_encoder_layers=7)


def test_switch_step_default_follows_the_authors_code():
    assert default_switch_step(0.5, 25) == 12
    assert default_switch_step(0.0, 25) == 25
    assert default_switch_step(1.0, 25) == 0
    assert switch(0.5, 25, SD14).step_weights == (0.0,) * 12 + (1.0,) * 13


def test_switch_step_10_is_reachable():
    assert switch(0.5, 25, SD14, switch_step=10).step_weights == (0.0,) * 10 + (1.0,) * 15


def test_alternate_is_prompt_1_on_even_steps_at_half():
    weights = alternate(0.5, 25, SD14).step_weights
    assert weights == tuple(float(i % 2) for i in range(25))


@pytest.mark.parametrize(
    "ratio, prompt_2_steps", [(0.0, 0), (0.2, 4), (0.25, 6), (1 / 3, 8), (0.5, 12), (0.75, 18), (0.9, 21), (1.0, 24)]
)
def test_alternate_gives_prompt_2_a_fraction_ratio_of_the_steps(ratio, prompt_2_steps):
    weights = alternate(ratio, 24, SD14).step_weights
    assert set(weights) <= {0.0, 1.0}
    assert sum(weights) == prompt_2_steps  # floor(24 * ratio)


def test_textual_is_the_ratio_at_every_step():
    assert textual(0.3, 5, SD14).step_weights == (0.3,) * 5
    assert textual(0.3, 5, SD14).layer_weights is None


def test_unet_at_half_splits_encoder_from_decoder():
    schedule = unet(0.5, 25, SD14)
    assert schedule.layer_weights == (0.0,) * 7 + (1.0,) * 9
    assert schedule.step_weights == (0.0,) * 25


def test_unet_split_is_monotone_with_the_right_ends():
    counts = [unet_layers_for_prompt_2(r / 100, SD14) for r in range(101)]
    assert counts[0] == 0 and counts[50] == 9 and counts[100] == 16
    assert all(a <= b for a, b in zip(counts, counts[1:]))


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_is_prompt_1_at_ratio_0_and_prompt_2_at_ratio_1(name):
    for ratio, weight in ((0.0, 0.0), (1.0, 1.0)):
        schedule = METHODS[name](ratio, 25, SD14, None)
        weights = set(schedule.layer_weights or schedule.step_weights)
        assert weights == {weight}, (name, ratio)
