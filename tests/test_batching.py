"""max_batch_size: comparisons larger than the budget run in batches, with the same images."""

import pytest

from blending import METHODS, blend, blend_seeds
from blending.testing.stock import batch_sizes

from .conftest import STEPS
from .test_blend import close

ALL = tuple(METHODS)
SEEDS = [3, 21]


def seeds_of(pipe, **kwargs):
    return blend_seeds(
        pipe, "lion", "cat", ALL, seeds=SEEDS, num_inference_steps=STEPS, output_type="np", progress=False, **kwargs
    )


@pytest.mark.parametrize("max_batch_size", [1, 5, 12])
def test_batches_give_the_images_of_one_batch(sd1_pipe, max_batch_size):
    whole = seeds_of(sd1_pipe)
    batched = seeds_of(sd1_pipe, max_batch_size=max_batch_size)
    for a, b in zip(whole, batched):
        assert close(a.prompt_1, b.prompt_1) and close(a.prompt_2, b.prompt_2)
        for method in ALL:
            assert close(a.blends[method], b.blends[method]), method
        assert b.settings["max_batch_size"] == max_batch_size


def test_no_unet_call_holds_more_than_max_batch_size_images_and_the_vae_decodes_one(sd1_pipe):
    unet_rows = batch_sizes(sd1_pipe.unet, lambda: seeds_of(sd1_pipe, max_batch_size=5))
    # 12 images in batches of 5, 5 and 2; each image has its unconditional row
    assert unet_rows == [10] * (2 * STEPS) + [4] * STEPS
    decoded = batch_sizes(sd1_pipe.vae.decoder, lambda: seeds_of(sd1_pipe, max_batch_size=5))
    assert decoded == [1] * 12  # its activations, not the U-Net's, peak at large sizes


def test_without_max_batch_size_everything_is_one_batch(sd1_pipe):
    assert batch_sizes(sd1_pipe.unet, lambda: seeds_of(sd1_pipe)) == [2 * 6 * len(SEEDS)] * STEPS
    assert batch_sizes(sd1_pipe.vae.decoder, lambda: seeds_of(sd1_pipe)) == [1] * (6 * len(SEEDS))


def test_blend_takes_max_batch_size_too(sd1_pipe):
    whole = blend(sd1_pipe, "lion", "cat", seed=4, num_inference_steps=STEPS, output_type="np", progress=False)
    batched = []
    rows = batch_sizes(
        sd1_pipe.unet,
        lambda: batched.append(
            blend(
                sd1_pipe,
                "lion",
                "cat",
                seed=4,
                num_inference_steps=STEPS,
                output_type="np",
                progress=False,
                max_batch_size=4,
            )
        ),
    )
    batched = batched[0]
    assert rows == [8] * STEPS + [4] * STEPS
    for method in ALL:
        assert close(whole.blends[method], batched.blends[method]), method


def test_a_callback_needs_the_whole_comparison_in_one_batch(sd1_pipe):
    with pytest.raises(ValueError, match=r"max_batch_size must be at least 6 .* callback_on_step_end"):
        blend(sd1_pipe, "lion", "cat", max_batch_size=5, callback_on_step_end=lambda *args: {})
    seen = []
    blend(
        sd1_pipe,
        "lion",
        "cat",
        ("switch",),
        num_inference_steps=STEPS,
        max_batch_size=3,
        progress=False,
        callback_on_step_end=lambda pipe, i, t, tensors: seen.append(tensors["latents"].shape[0]),
    )
    assert seen == [3] * STEPS
