"""The controlled-world study: per-blend records, sources that never double-count, design-aware intervals."""

import numpy as np
import pytest

import blending
from blending.toy.readers import load_readers
from blending.toy.study import (
    DISTINCT_SOURCES,
    StudyDesign,
    attribute_of_prompt,
    attribute_shares,
    compare_records,
    design_of,
    read_records,
    run_study,
    source_of,
    write_records,
)

SHARED_SIZE = ("a large red circle", "a large blue star")  # the prompts name the same size


@pytest.fixture(scope="module")
def embedded():
    pipe = blending.load_pipeline("embedded")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def records(embedded):
    design = StudyDesign([SHARED_SIZE], seeds=(0, 1, 2), ratios=(0.0, 0.5, 1.0), num_inference_steps=8)
    return run_study(embedded, design, net=load_readers())


def test_attribute_of_prompt():
    assert attribute_of_prompt("a large red circle") == {"shape": "circle", "colour": "red", "size": "large"}
    with pytest.raises(ValueError, match="prompt"):
        attribute_of_prompt("a red circle")


def test_a_value_both_prompts_name_is_counted_once():
    # the old tally counted it as from prompt 1 and from prompt 2, and "neither" went negative
    assert source_of("large", "large", "large") == "both"
    assert source_of("small", "large", "large") == "neither"
    assert source_of(None, "large", "small") == "neither"
    assert source_of("small", "large", "small") == "prompt_2"


def test_the_design_checks_its_arguments():
    with pytest.raises(ValueError, match="pairs"):
        StudyDesign([], seeds=(0,))
    with pytest.raises(ValueError, match="prompt must name"):
        StudyDesign([("a red circle", "a large blue star")], seeds=(0,))
    with pytest.raises(ValueError, match="ratios"):
        StudyDesign([SHARED_SIZE], seeds=(0,), ratios=(1.5,))
    with pytest.raises(ValueError, match="methods"):
        StudyDesign([SHARED_SIZE], seeds=(0,), methods=("blur",))


def test_one_record_per_blend_and_plain_images_at_the_ends(records):
    assert len(records) == 1 * 2 * 3 * 3 * 4  # pairs x orders x ratios x seeds x methods
    for ratio in (0.0, 1.0):
        for swapped in (False, True):
            for seed in (0, 1, 2):
                cell = [r for r in records if r["ratio"] == ratio and r["swapped"] == swapped and r["seed"] == seed]
                # every method at ratio 0 or 1 is the plain image: one reading for all four
                assert len({(r["shape_read"], r["colour_read"], r["size_read"]) for r in cell}) == 1
    assert {r["size_source"] for r in records} <= {"both", "neither"}  # shared: never prompt 1 or 2 alone


def test_textual_at_one_half_does_not_depend_on_the_order(records):
    # (1 - w) E1 + w E2 at w = 0.5 is symmetric: swapping the prompts draws the same picture
    def at_half(swapped):
        cell = [r for r in records if r["method"] == "textual" and r["ratio"] == 0.5 and r["swapped"] == swapped]
        return {r["seed"]: r for r in cell}

    forward, swapped = at_half(False), at_half(True)
    flip = {"prompt_1": "prompt_2", "prompt_2": "prompt_1", "both": "both", "neither": "neither"}
    for seed, record in forward.items():
        assert record["shape_read"] == swapped[seed]["shape_read"]
        assert flip[record["shape_source"]] == swapped[seed]["shape_source"]


def test_ratios_0_and_1_alone_run_in_both_orders(embedded):
    # swapped_ratios=[0, 1] used to raise KeyError: the plain images were drawn only with a blend
    design = StudyDesign([SHARED_SIZE], seeds=(0,), ratios=(0.0, 1.0), methods=("unet",), num_inference_steps=4)
    progress = Counter()
    records = run_study(embedded, design, net=load_readers(), progress=progress)
    assert sorted((r["swapped"], r["ratio"]) for r in records) == [(False, 0.0), (False, 1.0), (True, 0.0), (True, 1.0)]
    assert progress.done == design.num_blends // len(design.methods)  # a progress bar ends at its total


class Counter:
    """A stand-in for a tqdm bar: counts what run_study reports."""

    done = 0

    def update(self, count):
        self.done += count


def test_records_survive_a_round_trip_through_csv(records, tmp_path):
    write_records(records, tmp_path / "a.csv")
    again = read_records(tmp_path / "a.csv")
    key = lambda r: (r["swapped"], r["ratio"], r["method"], r["seed"])  # noqa: E731
    assert sorted(again, key=key) == sorted(records, key=key)
    write_records(list(reversed(again)), tmp_path / "b.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    # compressed: the same records, and the same bytes whenever they are written
    write_records(records, tmp_path / "a.csv.gz")
    assert sorted(read_records(tmp_path / "a.csv.gz"), key=key) == sorted(again, key=key)
    first = (tmp_path / "a.csv.gz").read_bytes()
    write_records(again, tmp_path / "a.csv.gz")
    assert (tmp_path / "a.csv.gz").read_bytes() == first


def test_a_rerun_of_some_seeds_compares_with_the_records(embedded, records):
    design = design_of(records, seeds=[1])
    assert (design.pairs, design.seeds, design.ratios, design.both_orders) == (
        (SHARED_SIZE,),
        (1,),
        (0.0, 0.5, 1.0),
        True,
    )
    assert design.num_inference_steps == 8
    progress = Counter()
    rerun = run_study(embedded, design, net=load_readers(), progress=progress)
    assert compare_records(records, rerun) == []
    assert progress.done == design.num_blends // len(design.methods)
    # a changed reading, a lost blend and a blend of another design are each reported
    changed = [dict(r) for r in rerun]
    changed[0]["shape_read"] = "no such shape"
    lost = changed.pop()
    extra = dict(lost, ratio=0.3)
    differences = compare_records(records, changed + [extra])
    changed_line = f"shape_read {rerun[0]['shape_read']!r}, rerun 'no such shape'"
    assert any(d.endswith(changed_line) for d in differences), differences
    assert any("not in the rerun" in d for d in differences) and any("not in the records" in d for d in differences)
    with pytest.raises(ValueError, match="seeds"):
        design_of(records, seeds=[7])


def synthetic(pairs_sources: dict[int, list[str]], prompts=("a large red circle", "a small blue star")) -> list[dict]:
    """Records of one cell (textual, 0.5, in order): each pair's shape sources, one per seed."""
    return [
        {
            "pair": pair,
            "swapped": False,
            "prompt_1": prompts[0],
            "prompt_2": prompts[1],
            "method": "textual",
            "ratio": 0.5,
            "seed": seed,
            "shape_source": source,
            "colour_source": source,
            "size_source": source,
        }
        for pair, sources in pairs_sources.items()
        for seed, source in enumerate(sources)
    ]


def test_shares_add_up_and_leave_out_attributes_the_prompts_share():
    records = synthetic({0: ["prompt_1"] * 6 + ["neither"] * 4}, prompts=SHARED_SIZE)
    shares = {sh.attribute: sh for sh in attribute_shares(records, resamples=200)}
    assert "size" not in shares  # both prompts name "large": no source to tell
    assert shares["shape"].fractions == pytest.approx({"prompt_1": 0.6, "prompt_2": 0.0, "neither": 0.4})
    assert sum(shares["shape"].fractions.values()) == pytest.approx(1)


def test_intervals_see_that_seeds_are_nested_in_pairs():
    # two pairs that disagree completely: 200 blends, but only two pairs' worth of evidence
    records = synthetic({0: ["prompt_1"] * 100, 1: ["prompt_2"] * 100})
    (shape,) = [sh for sh in attribute_shares(records) if sh.attribute == "shape"]
    assert shape.fractions["prompt_1"] == 0.5
    low, high = shape.intervals["prompt_1"]
    # 200 independent samples would give about 0.43-0.57; resampling the pairs gives 0 to 1
    assert low <= 0.05 and high >= 0.95
    # pairs that agree: the interval is tight around the shared rate
    rng = np.random.default_rng(0)
    agree = synthetic({p: list(rng.choice(["prompt_1", "prompt_2"], 100)) for p in range(8)})
    (shape,) = [sh for sh in attribute_shares(agree) if sh.attribute == "shape"]
    low, high = shape.intervals["prompt_1"]
    assert high - low < 0.2 and low <= shape.fractions["prompt_1"] <= high


def test_pairs_with_different_seeds_are_refused():
    records = synthetic({0: ["prompt_1"] * 3, 1: ["prompt_2"] * 4})
    with pytest.raises(ValueError, match="different seeds"):
        attribute_shares(records)


def test_every_source_has_an_interval():
    records = synthetic({0: ["prompt_1", "neither"], 1: ["prompt_2", "prompt_1"]})
    for share in attribute_shares(records, resamples=100):
        assert set(share.intervals) == set(DISTINCT_SOURCES)
        for source, (low, high) in share.intervals.items():
            assert 0 <= low <= share.fractions[source] <= high <= 1


@pytest.mark.slow
def test_the_study_command_resumes_after_an_interruption(tmp_path, monkeypatch, caplog):
    import json

    from blending.toy import study

    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps([list(SHARED_SIZE)]))
    arguments = ["--pairs", str(pairs), "--seeds", "1", "--ratios", "0.5", "--scorer", "none"]
    assert study.main(["--out", str(tmp_path / "whole.csv"), *arguments]) == 0

    def interrupted(*args, on_chunk, **kwargs):
        def first_chunk_then_crash(pair, swapped, records):
            on_chunk(pair, swapped, records)
            raise KeyboardInterrupt

        return run_study(*args, on_chunk=first_chunk_then_crash, **kwargs)

    monkeypatch.setattr(study, "run_study", interrupted)
    with pytest.raises(KeyboardInterrupt):
        study.main(["--out", str(tmp_path / "resumed.csv"), *arguments])
    assert [p.name for p in (tmp_path / "resumed.csv.parts").glob("pair-*")] == ["pair-0-ordered.csv"]
    monkeypatch.setattr(study, "run_study", run_study)
    caplog.set_level("INFO")
    assert study.main(["--out", str(tmp_path / "resumed.csv"), *arguments]) == 0
    assert "resuming: 1 of 2 chunks" in caplog.text
    assert (tmp_path / "resumed.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert not (tmp_path / "resumed.csv.parts").exists()
    # the parts of another study are not mixed in
    (tmp_path / "other.csv.parts").mkdir()
    (tmp_path / "other.csv.parts" / "settings.json").write_text("{}")
    with pytest.raises(SystemExit, match="another study"):
        study.main(["--out", str(tmp_path / "other.csv"), *arguments])
