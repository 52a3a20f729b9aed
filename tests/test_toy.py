"""The controlled world: pictures, tokenizer, readers, the shipped model's quality, the study."""

import random

import numpy as np
import pytest
import torch

from blending import blend_seeds, load_pipeline
from blending.toy import model as toy
from blending.toy import training_metrics
from blending.toy.readers import load_readers, read
from blending.toy.study import attribute_of_prompt, run_study, wilson_interval
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


def test_the_shipped_model_draws_held_out_prompts_with_their_shape_and_colour(embedded, readers):
    measured = evaluate(embedded, readers, samples_per_prompt=40, seed=0)
    assert measured["samples"] == 200
    assert measured["shape_and_colour"] >= 0.90, measured
    assert training_metrics()["held_out_generations"]["shape_and_colour"] >= 0.90


def test_the_embedded_model_is_small_enough_to_ship():
    from blending.loading import EMBEDDED_PATH

    size = sum(p.stat().st_size for p in EMBEDDED_PATH.rglob("*") if p.is_file())
    assert size <= 20_000_000, size


def test_wilson_interval():
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0 and wilson_interval(10, 10)[1] == 1


def test_attribute_of_prompt():
    assert attribute_of_prompt("a large red circle") == {"shape": "circle", "colour": "red", "size": "large"}
    with pytest.raises(ValueError, match="prompt"):
        attribute_of_prompt("a red circle")


def test_study_counts_are_consistent(embedded, readers):
    pair = ("a large red circle", "a small blue star")
    counts = run_study(embedded, [pair], [0, 1, 2], [0.0, 0.5, 1.0], [0.5], readers, num_inference_steps=10)
    assert {c.total for c in counts} == {3}
    at_0 = [c for c in counts if c.ratio == 0.0 and not c.swapped]
    assert len({(c.attribute, c.from_1, c.from_2) for c in at_0}) == 3  # every method: the same plain image
    # TEXTUAL at 0.5 is symmetric in the prompts: swapping them swaps the counts exactly
    for attribute in ("shape", "colour", "size"):
        forward, = [c for c in counts if c.method == "textual" and c.ratio == 0.5 and not c.swapped and c.attribute == attribute]
        swapped, = [c for c in counts if c.method == "textual" and c.ratio == 0.5 and c.swapped and c.attribute == attribute]
        assert (forward.from_1, forward.from_2, forward.neither) == (swapped.from_2, swapped.from_1, swapped.neither)


def test_training_runs_end_to_end_and_resumes(tmp_path, caplog):
    def arguments(vae_steps):
        return [
            "--work", str(tmp_path / "work"), "--out", str(tmp_path / "model"),
            "--readers-out", str(tmp_path / "readers.safetensors"), "--images", "64", "--batch-size", "8",
            "--vae-steps", str(vae_steps), "--denoiser-steps", "2", "--reader-steps", "2", "--eval-samples", "1",
        ]  # fmt: skip

    assert main(arguments(vae_steps=2)) == 0
    pipe = load_pipeline(tmp_path / "model")
    assert pipe.vae.config.scaling_factor != 0.18215  # measured from the latents, not SD's
    metrics = (tmp_path / "model" / "training_metrics.json").read_text()
    assert "readers_accuracy" in metrics and "held_out_generations" in metrics
    caplog.set_level("INFO")
    assert main(arguments(vae_steps=3)) == 0
    assert "vae: resuming at step 2 of 3" in caplog.text
