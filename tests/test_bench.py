"""The benchmark's contenders: the same images, and the U-Net work each costs (a count, not a time)."""

import numpy as np
import pytest

from blending import METHODS, blend
from blending.testing.stock import authors_unet_rows, count_unet_rows, stock_one_at_a_time

from .conftest import STEPS


def test_one_comparison_costs_the_minimum_of_unet_rows(sd1_pipe):
    rows = count_unet_rows(sd1_pipe.unet, lambda: blend(sd1_pipe, "lion", "cat", progress=False))
    assert rows == 6 * 25 * 2 == 300


def test_the_authors_strategy_costs_576_rows_at_25_steps():
    assert authors_unet_rows(25) == 3 * 4 * 25 * 2 - 12 * 2 == 576


def test_stock_one_call_per_image_costs_what_the_authors_strategy_saves_least(sd1_pipe):
    rows = count_unet_rows(
        sd1_pipe.unet, lambda: stock_one_at_a_time(sd1_pipe, "lion", "cat", num_inference_steps=STEPS)
    )
    assert rows == 6 * STEPS * 2  # same work as one batch, in six calls


@pytest.mark.parametrize("ratio", [0.25, 0.5])
def test_stock_diffusers_one_image_at_a_time_gives_the_batched_images(sd_pipe, ratio):
    """Every method, rebuilt with stock pipeline calls (callbacks, processors), equals blend's batch."""
    pipe = sd_pipe
    batched = blend(
        pipe, "lion", "cat", ratio=ratio, seed=7, num_inference_steps=STEPS, output_type="np", progress=False
    )
    stock = stock_one_at_a_time(pipe, "lion", "cat", ratio=ratio, seed=7, num_inference_steps=STEPS, output_type="np")
    for name in ("prompt_1", "prompt_2", *METHODS):
        mine = getattr(batched, name) if name.startswith("prompt") else batched.blends[name]
        assert np.abs(mine - stock[name]).max() < 1e-5, name


def test_the_committed_sweep_benchmark_is_of_the_toy_experiment_and_its_table():
    import json
    from pathlib import Path

    from blending.bench import sweep_table
    from blending.experiments.schema import comparisons, load_experiment

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    report = json.loads((folder / "sweep-cpu.json").read_text())
    toy = load_experiment("toy")
    assert report["results"]["experiment"] == "toy"
    assert report["results"]["images"] == len(comparisons(toy)) * (2 + len(toy.methods))
    assert (folder / "sweep-cpu.md").read_text() == sweep_table(report)
