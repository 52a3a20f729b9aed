"""blending survey make: a blind, balanced, byte-reproducible design from a sweep's folder (a fake
sweep here, written without diffusion: an index with the sweep's schema and small random PNGs whose
text metadata names their method)."""

import hashlib
import json
import logging
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from blending import METHODS, InputError
from blending.experiments.index import open_index, record_or_refuse_run_settings
from blending.experiments.schema import comparisons, experiment_from_dict
from blending.survey.design import make_study

PAIRS = [
    {"prompt_1": "a large red circle", "prompt_2": "a small blue star", "category": "every attribute differs"},
    {"prompt_1": "a small yellow square", "prompt_2": "a large green triangle", "category": "every attribute differs"},
]


def fake_sweep(out: Path, *, methods=tuple(METHODS), ratios=(0.5,), seeds=(0, 1, 2), both_orders=True, pairs=PAIRS):
    """A sweep's folder as ``blending sweep`` writes it, its PNGs random pixels tagged with their
    method (``method`` and ``comparison`` text chunks)."""
    experiment = experiment_from_dict(
        {
            "model": "embedded",
            "methods": list(methods),
            "ratios": list(ratios),
            "seeds": list(seeds),
            "both_orders": both_orders,
            "num_inference_steps": 3,
            "pairs": pairs,
        }
    )
    out.mkdir(parents=True)
    connection = open_index(out, experiment, force=False, journal_mode="delete")
    record_or_refuse_run_settings(connection, out, {"model": "embedded", "device": "cpu"})
    rows = []
    for comparison in comparisons(experiment):
        for image in ("prompt_1", "prompt_2", *experiment.methods):
            # a plain image depends on its prompt and seed only, as in a sweep
            prompt = {"prompt_1": comparison.prompt_1, "prompt_2": comparison.prompt_2}.get(image)
            key = f"{prompt}|{comparison.seed}" if prompt else f"{comparison.name}|{image}"
            rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))
            info = PngInfo()
            info.add_text("method", image)
            info.add_text("comparison", comparison.name)
            relative = f"images/{comparison.name}/{image}.png"
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(out / relative, pnginfo=info)
            sha = hashlib.sha256((out / relative).read_bytes()).hexdigest()
            rows.append(
                (
                    comparison.name,
                    comparison.category,
                    comparison.prompt_1,
                    comparison.prompt_2,
                    image,
                    comparison.ratio,
                    None,
                    str(comparison.seed),
                    relative,
                    sha,
                )
            )
    with connection:
        connection.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    connection.close()
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """2 pairs x 2 orders x 3 seeds: 12 blend trials of 4 methods."""
    return fake_sweep(tmp_path_factory.mktemp("survey") / "run")


@pytest.fixture(scope="module")
def study(sweep):
    path = make_study(sweep, sweep.parent / "study", trials_per_participant=8, seed=3)
    return path, json.loads(path.read_text())


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_design_has_the_format(study, sweep):
    path, design = study
    assert path.name == "design.json" and path.read_text().endswith("}\n")
    assert list(design) == ["format", "source", "settings", "trials", "blocks"]
    assert design["format"] == "blending-survey/1"
    assert design["source"] == {"run": sweep.name, "experiment": None, "model": "embedded"}
    assert design["settings"] == {
        "methods": list(METHODS),
        "trials_per_participant": 8,
        "attention_checks": 2,
        "seed": 3,
    }
    blends = [t for t in design["trials"] if t["kind"] == "blend"]
    attention = [t for t in design["trials"] if t["kind"] == "attention"]
    assert len(blends) == 12 and [t["id"] for t in design["trials"]] == [
        f"t{i:04d}" for i in range(1, len(design["trials"]) + 1)
    ]
    assert [t["kind"] for t in design["trials"]] == ["blend"] * 12 + ["attention"] * len(attention)
    for trial in blends:
        assert list(trial) == ["id", "kind", "category", "pair", "order", "seed", "prompt_1", "prompt_2", "options"]
        pair = PAIRS[trial["pair"]]
        given = (pair["prompt_1"], pair["prompt_2"])
        shown = (trial["prompt_1"], trial["prompt_2"])
        assert shown == (given if trial["order"] == "given" else given[::-1])
        assert trial["category"] == pair["category"]
        assert sorted(o["method"] for o in trial["options"]) == sorted(METHODS)
    # every (pair, order, seed) once
    assert Counter((t["pair"], t["order"], t["seed"]) for t in blends) == {
        (p, o, s): 1 for p in (0, 1) for o in ("given", "swapped") for s in (0, 1, 2)
    }
    # each option shows its own comparison's blend
    index = {(r[0], r[1]): r for r in _rows(sweep)}
    for trial in blends:
        for option in trial["options"]:
            row = index[_comparison_of(trial), option["method"]]
            assert _pixels(sweep / row[2]) == _pixels(sweep.parent / "study" / "images" / f"{option['image']}.png")


def _rows(sweep: Path):
    import sqlite3

    with sqlite3.connect(sweep / "index.sqlite") as connection:
        return connection.execute("SELECT comparison, image, path, prompt_1, seed FROM images").fetchall()


def _comparison_of(trial) -> str:
    return f"{trial['pair']:04d}-{int(trial['order'] == 'swapped')}-00-{trial['seed']}"


def _pixels(path: Path) -> bytes:
    with Image.open(path) as image:
        return image.convert("RGB").tobytes()


def test_the_same_inputs_give_the_same_bytes_and_a_rerun_is_a_no_op(sweep, study, tmp_path):
    path, _ = study
    again = make_study(sweep, tmp_path / "again", trials_per_participant=8, seed=3)
    # the design names the run folder as given: the same string, the same bytes
    assert again.read_bytes() == path.read_bytes()
    assert files(tmp_path / "again") == files(path.parent)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "again").rglob("*")}
    assert make_study(sweep, tmp_path / "again", trials_per_participant=8, seed=3) == again
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "again").rglob("*")} == stamps
    # another seed: another order and other ids
    other = json.loads(make_study(sweep, tmp_path / "other", trials_per_participant=8, seed=4).read_text())
    assert other["blocks"] != json.loads(path.read_text())["blocks"]
    assert not {o["id"] for t in other["trials"] for o in t["options"]} & {
        o["id"] for t in json.loads(path.read_text())["trials"] for o in t["options"]
    }


def test_a_missing_image_is_written_again(sweep, tmp_path):
    path = make_study(sweep, tmp_path / "study", trials_per_participant=8, seed=3)
    before = files(tmp_path / "study")
    victim = sorted((tmp_path / "study" / "images").iterdir())[0]
    victim.unlink()
    make_study(sweep, tmp_path / "study", trials_per_participant=8, seed=3)
    assert files(tmp_path / "study") == before and path.is_file()


def test_blocks_are_balanced(study):
    _, design = study
    blends = [t for t in design["trials"] if t["kind"] == "blend"]
    kinds = {t["id"]: t["kind"] for t in design["trials"]}
    blocks = design["blocks"]
    # 12 trials in blocks of 8: lcm 24, 3 blocks, every trial twice
    assert len(blocks) == 3
    seen = Counter(trial for block in blocks for trial in block if kinds[trial] == "blend")
    assert set(seen) == {t["id"] for t in blends} and set(seen.values()) == {2}
    for block in blocks:
        assert len(block) == 10 and len(set(block)) == 10
        assert [kinds[t] for t in block].count("attention") == 2
        # after 8 * 1/3 and 8 * 2/3 blend trials
        assert [i for i, t in enumerate(block) if kinds[t] == "attention"] == [2, 6]
    # every attention trial in exactly one block
    attention = Counter(t for block in blocks for t in block if kinds[t] == "attention")
    assert set(attention.values()) == {1} and len(attention) == 6
    # every method in every position equally often across the blend trials
    positions = Counter((i, o["method"]) for t in blends for i, o in enumerate(t["options"]))
    assert positions == {(i, m): 3 for i in range(4) for m in METHODS}


def test_every_blend_trial_seen_once_when_the_blocks_divide_them(sweep, tmp_path):
    design = json.loads(make_study(sweep, tmp_path / "study", trials_per_participant=4, attention_checks=1).read_text())
    kinds = {t["id"]: t["kind"] for t in design["trials"]}
    blends = [t for block in design["blocks"] for t in block if kinds[t] == "blend"]
    assert len(design["blocks"]) == 3 and sorted(blends) == sorted(t for t in kinds if kinds[t] == "blend")
    assert all([kinds[t] for t in block].index("attention") == 2 for block in design["blocks"])


def test_a_short_block_never_shows_one_pair_and_seed_in_both_orders(sweep, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="blending.survey.design"):
        make_study(sweep, tmp_path / "long", trials_per_participant=7, attention_checks=0)
    assert "at most 6 avoids it" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="blending.survey.design"):
        design = json.loads(
            make_study(sweep, tmp_path / "study", trials_per_participant=6, attention_checks=0).read_text()
        )
    assert not caplog.records
    trials = {t["id"]: t for t in design["trials"]}
    # the cycle: pairs fastest; rounds alternate orders, a seed's two orders 3 rounds apart
    rounds = [(trials[f"t{i:04d}"]["seed"], trials[f"t{i:04d}"]["order"]) for i in range(1, 13, 2)]
    assert rounds == [(0, "given"), (1, "swapped"), (2, "given"), (0, "swapped"), (1, "given"), (2, "swapped")]
    assert [trials[f"t{i:04d}"]["pair"] for i in range(1, 13)] == [0, 1] * 6
    assert len(design["blocks"]) == 2
    for block in design["blocks"]:
        shown = Counter((trials[t]["pair"], trials[t]["seed"]) for t in block)
        assert set(shown.values()) == {1}
        assert Counter(trials[t]["pair"] for t in block) == {0: 3, 1: 3}
        assert set(block) != {t for t in block if trials[t]["order"] == "given"}  # the orders mix


def test_attention_trials_ask_for_the_plain_image(study, sweep):
    path, design = study
    plain = {}  # (prompt, seed) -> the plain image's pixels
    for _comparison, image, relative, prompt_1, seed in _rows(sweep):
        if image in ("prompt_1", "prompt_2"):
            prompt = prompt_1 if image == "prompt_1" else _other_prompt(prompt_1)
            plain[prompt, int(seed)] = _pixels(sweep / relative)
    attention = [t for t in design["trials"] if t["kind"] == "attention"]
    assert attention
    answers = Counter()
    for trial in attention:
        assert trial["prompt_1"] == trial["prompt_2"]
        assert (trial["category"], trial["pair"], trial["order"]) == (None, None, None)
        assert len(trial["options"]) == 4  # as many as a blend trial: 4 prompts exist
        by_id = {o["id"]: o for o in trial["options"]}
        answer = by_id[trial["answer"]]
        answers[trial["options"].index(answer)] += 1
        assert answer["method"] == "plain"
        assert _pixels(path.parent / "images" / f"{answer['image']}.png") == plain[trial["prompt_1"], trial["seed"]]
        distractors = [o for o in trial["options"] if o is not answer]
        assert {o["method"] for o in distractors} == {"distractor"}
        others = {v: k for k, v in plain.items() if k[0] != trial["prompt_1"]}
        shown = [others[_pixels(path.parent / "images" / f"{o['image']}.png")] for o in distractors]
        assert len({prompt for prompt, _ in shown}) == 3 and all(s == trial["seed"] for _, s in shown)
    assert set(answers) == {0, 1, 2, 3}  # the answer's position rotates
    assert len({t["prompt_1"] for t in attention[:4]}) == 4  # the prompts in turn


def _other_prompt(prompt_1: str) -> str:
    for pair in PAIRS:
        if pair["prompt_1"] == prompt_1:
            return pair["prompt_2"]
        if pair["prompt_2"] == prompt_1:
            return pair["prompt_1"]
    raise AssertionError(prompt_1)


def test_attention_options_are_capped_by_the_prompts(tmp_path):
    run = fake_sweep(tmp_path / "run", pairs=PAIRS[:1], seeds=(0, 1), both_orders=False)
    design = json.loads(make_study(run, tmp_path / "study", attention_checks=1).read_text())
    attention = [t for t in design["trials"] if t["kind"] == "attention"]
    assert [len(t["options"]) for t in attention] == [2]


def test_nothing_a_participant_receives_names_a_method(study):
    path, design = study
    names = [*METHODS, "plain", "distractor", "prompt_1", "prompt_2"]
    images = sorted((path.parent / "images").iterdir())
    assert len(images) == len({o["image"] for t in design["trials"] for o in t["options"]})
    ids = [t["id"] for t in design["trials"]] + [
        o[k] for t in design["trials"] for o in t["options"] for k in ("id", "image")
    ]
    assert len({o["id"] for t in design["trials"] for o in t["options"]}) == sum(
        len(t["options"]) for t in design["trials"]
    )
    for text in ids + [p.name for p in images]:
        assert not any(name in text.lower() for name in names), text
    for image in images:
        with Image.open(image) as opened:
            assert opened.info == {} and not getattr(opened, "text", {}), opened.info
        data = image.read_bytes()
        assert b"tEXt" not in data and b"iTXt" not in data and b"zTXt" not in data
        assert not any(name.encode() in data for name in (*METHODS, "method", "comparison"))


def test_methods_are_chosen_in_the_papers_order(sweep, tmp_path):
    design = json.loads(make_study(sweep, tmp_path / "s", methods=["unet", "switch"]).read_text())
    assert design["settings"]["methods"] == ["switch", "unet"]
    blends = [t for t in design["trials"] if t["kind"] == "blend"]
    assert all({o["method"] for o in t["options"]} == {"switch", "unet"} for t in blends)
    assert design["settings"]["trials_per_participant"] == 12 and len(design["blocks"]) == 1


def test_several_ratios_say_which(tmp_path):
    run = fake_sweep(tmp_path / "run", methods=("switch", "unet"), ratios=(0.25, 0.5), both_orders=False)
    design = json.loads(make_study(run, tmp_path / "study").read_text())
    blends = [t for t in design["trials"] if t["kind"] == "blend"]
    assert Counter(t["ratio"] for t in blends) == {0.25: 6, 0.5: 6}
    assert all(t["ratio"] is None for t in design["trials"] if t["kind"] == "attention")
    assert all(list(t)[6] == "ratio" for t in design["trials"])


def test_the_shipped_experiment_is_named(tmp_path):
    from blending.experiments.schema import load_experiment

    toy = load_experiment("toy")
    pairs = [{"prompt_1": p.prompt_1, "prompt_2": p.prompt_2, "category": p.category} for p in toy.pairs]
    run = fake_sweep(tmp_path / "run", pairs=pairs, seeds=toy.seeds, both_orders=False)
    # the fake sweep's 3 steps are not the toy's 25: an experiment of its own
    assert json.loads(make_study(run, tmp_path / "a").read_text())["source"]["experiment"] is None
    import sqlite3

    with sqlite3.connect(run / "index.sqlite") as connection:
        connection.execute("UPDATE settings SET value = ? WHERE key = 'experiment'", (json.dumps(toy.as_dict()),))
    connection.close()
    assert json.loads(make_study(run, tmp_path / "b").read_text())["source"]["experiment"] == "toy"


REFUSED = [
    ({"methods": ["blur", "switch"]}, "methods: unknown method 'blur'"),
    ({"methods": ["switch"]}, "methods: a comparison needs at least 2 methods"),
    ({"methods": ["switch", "switch", "unet"]}, "methods: a method is listed twice"),
    ({"methods": "switch"}, "methods: must be a list of method names"),
    ({"trials_per_participant": 0}, "trials_per_participant: must be an integer >= 1, got 0"),
    ({"trials_per_participant": 13}, "trials_per_participant: must be at most the sweep's 12 blend trials, got 13"),
    ({"trials_per_participant": 2.5}, "trials_per_participant: must be an integer >= 1"),
    ({"attention_checks": -1}, "attention_checks: must be an integer >= 0, got -1"),
    (
        {"attention_checks": 5, "trials_per_participant": 4},
        "attention_checks: must be at most trials_per_participant (4)",
    ),
    ({"seed": -1}, "seed: must be an integer >= 0, got -1"),
    ({"seed": True}, "seed: must be an integer >= 0, got True"),
]


@pytest.mark.parametrize(("arguments", "message"), REFUSED)
def test_bad_arguments_are_refused(sweep, tmp_path, arguments, message):
    with pytest.raises(InputError) as caught:
        make_study(sweep, tmp_path / "study", **arguments)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert not (tmp_path / "study").exists()


def test_a_method_the_sweep_lacks_is_refused(tmp_path):
    run = fake_sweep(tmp_path / "run", methods=("switch", "unet"), seeds=(0,))
    with pytest.raises(InputError, match=r"^methods: the sweep has no 'textual' blends; it has \['switch', 'unet'\]$"):
        make_study(run, tmp_path / "study", methods=["textual", "switch"])
    only = fake_sweep(tmp_path / "one", methods=("switch",), seeds=(0,))
    with pytest.raises(InputError, match=r"^methods: a comparison needs at least 2 methods, got \['switch'\]$"):
        make_study(only, tmp_path / "study")


def test_a_folder_without_an_index_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"^run_dir: no sweep index at '.*index.sqlite'"):
        make_study(tmp_path, tmp_path / "study")
    assert not (tmp_path / "study").exists()


def test_an_index_without_images_is_refused(tmp_path):
    experiment = experiment_from_dict({"model": "embedded", "pairs": PAIRS})
    (tmp_path / "run").mkdir()
    open_index(tmp_path / "run", experiment, force=False, journal_mode="delete").close()
    with pytest.raises(InputError, match=r"^run_dir: the sweep at '.*run' has no images yet$"):
        make_study(tmp_path / "run", tmp_path / "study")


def test_a_changed_or_missing_sweep_image_is_refused(tmp_path):
    run = fake_sweep(tmp_path / "run", methods=("switch", "unet"), seeds=(0,), both_orders=False)
    target = run / "images" / "0000-0-00-0" / "unet.png"
    Image.new("RGB", (8, 8)).save(target)
    with pytest.raises(InputError, match=r"^run_dir: the image 'images/0000-0-00-0/unet.png' is not the one the index"):
        make_study(run, tmp_path / "study")
    target.unlink()
    with pytest.raises(InputError, match=r"^run_dir: the index's image 'images/0000-0-00-0/unet.png' is missing$"):
        make_study(run, tmp_path / "study")
    assert not (tmp_path / "study" / "design.json").exists()


def test_an_out_holding_another_design_is_refused(sweep, study, tmp_path):
    path, _ = study
    with pytest.raises(InputError, match=r"^out: '.*study' already holds a different design; choose another folder$"):
        make_study(sweep, path.parent, trials_per_participant=8, seed=4)
    assert json.loads(path.read_text())["settings"]["seed"] == 3
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match=r"^out: '.*file' is a file, not a folder$"):
        make_study(sweep, tmp_path / "file")


def test_errors_are_value_errors(tmp_path):
    with pytest.raises(ValueError, match="run_dir"):
        make_study(tmp_path, tmp_path / "study")


def test_the_module_does_not_import_torch():
    code = "import sys, blending.survey.design; assert 'torch' not in sys.modules, 'torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
