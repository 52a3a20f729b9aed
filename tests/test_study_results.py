"""The committed controlled-world study: its design is the one the chapter describes, and a slice reproduces."""

import pytest

import blending
from blending.scores.clip import load_scorer
from blending.toy.readers import load_readers
from blending.toy.study import RESULTS_PATH, attribute_of_prompt, compare_records, design_of, read_records, run_study

#: Seeds of every cell that CI reruns (the study has 100).
SLICE = (0, 1)


@pytest.fixture(scope="module")
def committed():
    return read_records(RESULTS_PATH)


def test_the_committed_study_has_the_design_the_chapter_describes(committed):
    design = design_of(committed)
    assert len(design.pairs) >= 8 and design.both_orders
    assert design.seeds == tuple(range(100)) and design.ratios == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert design.methods == tuple(blending.METHODS)
    assert (design.num_inference_steps, design.guidance_scale) == (25, 7.5)
    assert len(committed) == design.num_blends
    differing = [
        sum(attribute_of_prompt(first)[a] != attribute_of_prompt(second)[a] for a in ("shape", "colour", "size"))
        for first, second in design.pairs
    ]
    assert 1 in differing and 2 in differing and 3 in differing  # single-attribute pairs, one shared attribute
    assert {"text_1", "coverage", "balance"} <= set(committed[0])


@pytest.mark.slow
def test_a_slice_of_the_committed_study_reproduces(committed):
    """Two seeds of every cell, drawn, read and scored again: the same readings, and CLIP scores
    within compare_records' tolerance (which the oldest supported versions need)."""
    pipe = blending.load_pipeline("embedded")
    pipe.set_progress_bar_config(disable=True)
    rerun = run_study(
        pipe, design_of(committed, seeds=SLICE), net=load_readers(), scorer=load_scorer("embedded"), max_batch_size=150
    )
    assert compare_records(committed, rerun) == []
