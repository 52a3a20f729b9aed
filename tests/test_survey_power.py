"""The committed power curve of the simulated study: well formed, and a slice of it reproduces."""

from __future__ import annotations

import hashlib
import json
import math
import random

import pytest

pytest.importorskip("choix")
pytest.importorskip("krippendorff")
pytest.importorskip("starlette")

from blending.survey import power  # noqa: E402
from blending.survey.power import OUTCOMES, RESULTS_PATH, STUDY_PATH, wilson  # noqa: E402

#: Repetitions of the smallest count that CI reruns (the committed curve has 20 of each count).
SLICE = 2


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads(RESULTS_PATH.read_text())


@pytest.fixture(scope="module")
def readers():
    from blending.toy.readers import load_readers

    return load_readers()


def test_wilson_intervals():
    low, high = wilson(0, 20)
    assert low == 0 and high == pytest.approx(0.1611, abs=1e-4)
    low, high = wilson(10, 20)
    assert low == pytest.approx(1 - high) and low == pytest.approx(0.2993, abs=1e-4)
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_the_committed_curve_is_well_formed(committed):
    assert committed["format"] == power.FORMAT
    for key in ("created", "machine", "versions", "seconds", "command", "settings", "study", "truth", "curve"):
        assert key in committed, key
    settings, study = committed["settings"], committed["study"]
    assert (settings["random_rate"], settings["careless"]) == (power.RANDOM_RATE, power.CARELESS)
    assert settings["seeds"] == list(range(settings["repetitions"])) and settings["shuffle"] is False
    # the study it was measured on is the committed one
    design = STUDY_PATH / "design.json"
    assert committed["study_folder"] == STUDY_PATH.name
    assert study["design_sha256"] == hashlib.sha256(design.read_bytes()).hexdigest()
    methods = study["methods"]
    assert study["source"]["model"] == "embedded" and study["source"]["experiment"] == "toy"
    # the truth
    truth = committed["truth"]
    assert sorted(truth["ranking"]) == sorted(methods) and sum(truth["shares"].values()) == pytest.approx(1)
    assert truth["top"] == [m for m in truth["ranking"] if truth["shares"][m] == max(truth["shares"].values())]
    # the curve: every count, every seed, rates that are the runs' counts
    assert [p["participants"] for p in committed["curve"]] == sorted(settings["participants"])
    for point in committed["curve"]:
        runs = point["runs"]
        assert [r["seed"] for r in runs] == settings["seeds"] and point["reruns"] == len(runs)
        for run in runs:
            assert sorted(run["ranking"]) == sorted(methods)
            assert run["right_and_sure"] == (run["top_match"] and run["excludes_runner_up"])
            assert run["spearman"] is None or -1 <= run["spearman"] <= 1
            assert 0 <= run["participants_excluded"] <= point["participants"]
            share, low, high = run["top"]
            assert low <= share <= high and run["top"][0] >= run["runner_up"][0]
        for name in OUTCOMES:
            entry = point[name]
            assert entry["count"] == sum(r[name] for r in runs)
            assert entry["rate"] == entry["count"] / len(runs)
            assert (entry["low"], entry["high"]) == pytest.approx(wilson(entry["count"], len(runs)))
            assert entry["low"] <= entry["rate"] <= entry["high"]
    for key, value in committed["needed"].items():
        outcome, bound = (key.removesuffix("_wilson_low_80"), "low") if "wilson" in key else (key[:-3], "rate")
        assert value == power.needed(committed["curve"], outcome, bound=bound), key
    assert (RESULTS_PATH.with_suffix(".md")).read_text() == power.markdown(committed)


def test_the_cached_chooser_chooses_as_the_readers_chooser(readers):
    """The cache reads each trial once; its choices, ties included (the committed study has trials
    where the readers tie), are readers_chooser's, whatever the options' order."""
    from PIL import Image

    from blending.survey.simulate import readers_chooser

    design = json.loads((STUDY_PATH / "design.json").read_text())
    picks = power.read_picks(STUDY_PATH, readers)
    assert any(len(entry["best"]) > 1 for entry in picks.values())
    shuffle = random.Random(0)
    for seed in (3,):
        cached, direct = power.cached_readers_chooser(picks, seed), readers_chooser(seed, net=readers)
        for trial in design["trials"]:
            options = list(trial["options"])
            for _ in range(2):
                shuffle.shuffle(options)
                images = {}
                for option in options:
                    with Image.open(STUDY_PATH / "images" / f"{option['image']}.png") as image:
                        images[option["id"]] = image.convert("RGB")
                prompts = (trial["prompt_1"], trial["prompt_2"])
                assert cached(*prompts, images) == direct(*prompts, images), trial["id"]
    with pytest.raises(ValueError, match="not a trial of this study"):
        power.cached_readers_chooser(picks)("a red circle", "a blue star", {"nope": None})


def test_a_slice_of_the_committed_curve_reproduces(committed, readers):
    """The smallest count, run alone for the first two seeds through the server in process: the same
    outcomes as the committed curve's, which took them from longer runs' first participants."""
    settings = committed["settings"]
    truth = power.readers_truth(STUDY_PATH, readers)
    assert truth["shares"] == committed["truth"]["shares"] and truth["top"] == committed["truth"]["top"]
    smallest = min(settings["participants"])
    seeds = settings["seeds"][:SLICE]
    rerun = power.rerun(
        STUDY_PATH,
        smallest,
        seeds,
        truth=truth,
        picks=power.read_picks(STUDY_PATH, readers),
        random_rate=settings["random_rate"],
        careless=settings["careless"],
        resamples=settings["resamples"],
    )[smallest]
    expected = next(p for p in committed["curve"] if p["participants"] == smallest)["runs"][:SLICE]
    exact = ("seed", "participants_excluded", "ranking", *OUTCOMES)
    for got, want in zip(rerun, expected, strict=True):
        assert {k: got[k] for k in exact} == {k: want[k] for k in exact}
        assert got["spearman"] == pytest.approx(want["spearman"], abs=1e-6)
        assert got["top"] == pytest.approx(want["top"], abs=1e-4)
        assert got["runner_up"] == pytest.approx(want["runner_up"], abs=1e-4)
