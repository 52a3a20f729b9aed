"""CLIP against the readers' truth: the readers' scores, Spearman's rho, the best-method comparison."""

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from blending.methods import METHODS
from blending.scores.clip import BlendScores
from blending.toy.agreement import best_methods, method_means, reader_scores, score_agreement, spearman, truth_groups

PAIRS = [("a large red circle", "a small blue star"), ("a small green square", "a large yellow cross")]


def record(pair, method, seed, sources, text_1, text_2, *, ratio=0.5, prompts=None):
    """A study record whose shape, colour and size come from ``sources``, with CLIP text scores."""
    prompt_1, prompt_2 = prompts or PAIRS[pair]
    scores = BlendScores(text_1, text_2, 0.0, 0.0).as_dict()
    return {
        "pair": pair,
        "swapped": False,
        "prompt_1": prompt_1,
        "prompt_2": prompt_2,
        "method": method,
        "ratio": ratio,
        "seed": seed,
        **{f"{a}_source": s for a, s in zip(("shape", "colour", "size"), sources)},
        **scores,
    }


def test_spearman_equals_scipy_with_and_without_ties():
    rng = np.random.default_rng(0)
    for x, y in [(rng.normal(size=50), rng.normal(size=50)), (rng.integers(4, size=60), rng.integers(3, size=60))]:
        assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="x and y"):
        spearman([1, 2], [1, 2, 3])


def test_reader_scores_count_only_the_attributes_the_prompts_name_differently():
    # shape from prompt 1, colour from prompt 2, size shared: half of each
    shared_size = ("a large red circle", "a large blue star")
    truth = reader_scores(record(0, "unet", 0, ("prompt_1", "prompt_2", "both"), 1, 1, prompts=shared_size))
    assert (truth.share_1, truth.share_2, truth.differing) == (0.5, 0.5, 2)
    assert (truth.coverage, truth.balance, truth.leaning) == (0.5, 1.0, 0.0)
    # one differing attribute: the blend is one prompt or the other, so coverage says nothing
    colour_only = ("a large red circle", "a large blue circle")
    truth = reader_scores(record(0, "unet", 0, ("both", "prompt_2", "both"), 1, 1, prompts=colour_only))
    assert math.isnan(truth.coverage) and math.isnan(truth.balance) and truth.leaning == -1.0
    # a blend that takes nothing from either prompt has no balance
    assert math.isnan(reader_scores(record(0, "unet", 0, ("neither",) * 3, 1, 1)).balance)


def test_scores_that_follow_the_truth_agree_fully_and_reversed_ones_disagree():
    outcomes = [
        ("prompt_1",) * 3,
        ("prompt_1", "prompt_1", "prompt_2"),
        ("prompt_1", "prompt_2", "prompt_2"),
        ("prompt_2",) * 3,
    ]
    follows, reversed_ = [], []
    for pair in (0, 1):
        for seed, sources in enumerate(outcomes):
            # integer scores: equal truths give exactly equal CLIP numbers
            from_1, from_2 = sources.count("prompt_1"), sources.count("prompt_2")
            follows.append(record(pair, "textual", seed, sources, 20 + 3 * from_1, 20 + 3 * from_2))
            reversed_.append(record(pair, "textual", seed, sources, 20 + 3 * from_2, 20 + 3 * from_1))
    by_measure = {a.measure: a for a in score_agreement(follows, resamples=200)}
    assert by_measure["leaning"].rho == pytest.approx(1.0)
    assert by_measure["leaning"].interval == pytest.approx((1.0, 1.0))
    assert by_measure["coverage"].rho == pytest.approx(1.0)
    assert (by_measure["leaning"].blends, by_measure["leaning"].pairs) == (8, 2)
    assert {a.measure: a for a in score_agreement(reversed_, resamples=10)}["leaning"].rho == pytest.approx(-1.0)


def test_plain_images_and_unscored_records_are_refused():
    plain = [record(0, m, 0, ("prompt_1",) * 3, 30, 20, ratio=0.0) for m in METHODS]
    with pytest.raises(ValueError, match="no blends"):
        score_agreement(plain)
    unscored = [{k: v for k, v in record(0, "unet", 0, ("prompt_1",) * 3, 30, 20).items() if k != "text_1"}]
    with pytest.raises(ValueError, match="scorer"):
        best_methods(unscored)


def test_best_methods_compares_clip_best_with_the_truth_best_and_flags_ties():
    both = ("prompt_1", "prompt_2", "prompt_2")  # covers both prompts
    one = ("prompt_1",) * 3  # covers prompt 1 only
    records = []
    for seed in range(3):
        # pair 0: ALTERNATE covers both, and CLIP sees it; pair 1: ALTERNATE covers both, CLIP prefers UNET
        for method in METHODS:
            records.append(
                record(0, method, seed, both if method == "alternate" else one, 25, 25 if method == "alternate" else 5)
            )
            records.append(
                record(1, method, seed, both if method == "alternate" else one, 25, 25 if method == "unet" else 5)
            )
    rows = {row.pair: row for row in best_methods(records, "coverage")}
    assert (rows[0].clip_best, rows[0].truth_best, rows[0].agree, rows[0].informative) == (
        "alternate",
        ("alternate",),
        True,
        True,
    )
    assert (rows[1].clip_best, rows[1].agree) == ("unet", False)
    # every method covers equally: no method is best, any pick is right
    ties = [record(0, m, 0, one, 25, 5) for m in METHODS]
    (row,) = best_methods(ties, "coverage")
    assert row.agree and not row.informative
    with pytest.raises(ValueError, match="measure"):
        best_methods(records, "beauty")


def test_method_means_weigh_every_pair_alike_and_compare_both_numbers():
    both = ("prompt_1", "prompt_2", "prompt_2")  # coverage 1/3
    one = ("prompt_1",) * 3  # coverage 0
    records = [record(0, "textual", seed, both, 30, 10) for seed in range(4)]  # CLIP coverage 10
    records += [record(1, "textual", 0, one, 20, 20)]  # one seed only, CLIP coverage 20
    records += [record(0, "textual", 0, one, 90, 90, ratio=0.25)]  # another ratio: left out
    means = method_means(records, "coverage")
    assert list(means) == ["textual"]
    truth, clip = means["textual"]
    assert truth == pytest.approx((1 / 3 + 0) / 2) and clip == pytest.approx((10 + 20) / 2)
    with pytest.raises(ValueError, match="ratio"):
        method_means(records, "coverage", ratio=0.75)


def test_truth_groups_sort_blends_by_what_they_take_and_average_clip_within_each():
    records = [
        record(0, "unet", 0, ("prompt_1", "prompt_2", "prompt_2"), 30, 20),  # both prompts
        record(0, "switch", 0, ("prompt_2", "prompt_2", "prompt_2"), 5, 40),  # one prompt only
        record(0, "switch", 1, ("prompt_1", "neither", "neither"), 40, 8),  # one prompt only, the rest from neither
        record(0, "alternate", 0, ("neither", "neither", "neither"), 12, 10),  # neither prompt
        # one differing attribute (size): coverage means nothing, left out
        record(0, "textual", 0, ("both", "both", "prompt_1"), 90, 90, prompts=("a small red star", "a large red star")),
    ]
    groups = {g.name: g for g in truth_groups(records)}
    assert [g.blends for g in groups.values()] == [1, 2, 1]
    assert groups["one prompt only"].by_method == {"textual": 0, "switch": 2, "unet": 0, "alternate": 0}
    assert groups["one prompt only"].coverage == pytest.approx((5 + 8) / 2)
    assert groups["neither prompt"].balance == pytest.approx(1 - 2 / 22)
    with pytest.raises(ValueError, match="two attributes"):
        truth_groups(records[-1:])
