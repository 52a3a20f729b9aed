"""The controlled world: pictures, tokenizer, readers, the shipped model's quality, the study."""

import random

import numpy as np
import pytest

from blending import load_pipeline
from blending.toy import model as toy
from blending.toy import training_metrics
from blending.toy.readers import load_readers
from blending.toy.train import evaluate, main, reader_accuracy
from blending.toy.world import HELD_OUT, SHAPES, Attributes, caption, render, sample_attributes, sample_batch


def test_every_shape_renders_differently_and_deterministically():
    masks = {s: render(Attributes(s, "red", "large")).sum(axis=-1) < 2.5 for s in SHAPES}
    for a in SHAPES:
        for b in SHAPES:
            if a != b:
                assert (masks[a] != masks[b]).mean() > 0.01, (a, b)
    assert np.array_equal(render(Attributes("star", "blue", "small")), render(Attributes("star", "blue", "small")))
    small, large = (render(Attributes("circle", "red", size)).sum(axis=-1) < 2.5 for size in ("small", "large"))
    assert large.sum() > 2 * small.sum()


def test_captions_name_what_they_keep():
    a = Attributes("circle", "red", "large")
    assert caption(a) == "a large red circle"
    assert caption(a, (False, True, True)) == "a red circle"
    assert caption(a, (False, False, True)) == "a circle"
    assert caption(a, (False, False, False)) == "an object"


def test_training_pictures_never_show_a_held_out_combination():
    rng = random.Random(0)
    seen = {(a.shape, a.colour, a.size) for a in (sample_attributes(rng) for _ in range(3000))}
    assert seen.isdisjoint(HELD_OUT) and len(seen) == 5 * 5 * 2 - len(HELD_OUT)
    images, captions, _ = sample_batch(random.Random(1), 8)
    assert images.shape == (8, 3, 64, 64) and -1 <= images.min() and images.max() <= 1 and len(captions) == 8


def test_every_word_of_the_world_is_one_token():
    tokenizer = toy.build_tokenizer()
    for word in toy.VOCABULARY:
        assert len(tokenizer.tokenize(word)) == 1, word
    assert tokenizer("a lion").input_ids[-1] == tokenizer.eos_token_id  # other words still tokenize


@pytest.fixture(scope="module")
def embedded():
    pipe = load_pipeline("embedded")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def readers():
    return load_readers()


def test_readers_are_at_least_98_percent_accurate_on_the_worlds_pictures(readers):
    accuracy = reader_accuracy(readers, count=500, seed=777)
    assert min(accuracy.values()) >= 0.98, accuracy


@pytest.mark.slow
def test_the_shipped_model_draws_held_out_prompts_with_their_shape_and_colour(embedded, readers):
    measured = evaluate(embedded, readers, samples_per_prompt=40, seed=0)
    assert measured["samples"] == 200
    assert measured["shape_and_colour"] >= 0.90, measured
    assert training_metrics()["held_out_generations"]["shape_and_colour"] >= 0.90


def test_the_embedded_model_is_small_enough_to_ship():
    from blending.loading import EMBEDDED_PATH

    size = sum(p.stat().st_size for p in EMBEDDED_PATH.rglob("*") if p.is_file())
    assert size <= 20_000_000, size


@pytest.mark.slow
def test_training_runs_end_to_end_and_resumes(tmp_path, caplog):
    def arguments(vae_steps):
        return [
            "--work",
            str(tmp_path / "work"),
            "--out",
            str(tmp_path / "model"),
            "--readers-out",
            str(tmp_path / "readers.safetensors"),
            "--images",
            "64",
            "--batch-size",
            "8",
            "--vae-steps",
            str(vae_steps),
            "--denoiser-steps",
            "2",
            "--reader-steps",
            "2",
            "--eval-samples",
            "1",
        ]

    assert main(arguments(vae_steps=2)) == 0
    pipe = load_pipeline(tmp_path / "model")
    assert pipe.vae.config.scaling_factor != 0.18215  # measured from the latents, not SD's
    metrics = (tmp_path / "model" / "training_metrics.json").read_text()
    assert "readers_accuracy" in metrics and "held_out_generations" in metrics
    caplog.set_level("INFO")
    assert main(arguments(vae_steps=3)) == 0
    assert "vae: resuming at step 2 of 3" in caplog.text


def test_the_toy_unet_is_wired_like_stable_diffusion(embedded):
    """Counted by the cross_attention_layout the methods use, on SD v1.4's own configuration:
    the training script's U-Net and the shipped one."""
    from blending.attention import cross_attention_layout
    from blending.testing.components import unet_skeleton

    def by_part(unet):
        layout = cross_attention_layout(unet)
        parts = [name.split(".")[0] for name in layout.names]
        return [parts.count(p) for p in ("down_blocks", "mid_block", "up_blocks")], layout.num_encoder_layers

    assert by_part(unet_skeleton("sd-v1-4")) == ([6, 1, 9], 7)
    assert by_part(toy.build_unet()) == ([6, 1, 9], 7)
    assert by_part(embedded.unet) == ([6, 1, 9], 7)
    assert embedded.unet.config.down_block_types == unet_skeleton("sd-v1-4").config.down_block_types
