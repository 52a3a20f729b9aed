"""blending sweep: experiment files checked before any work, resumable and safe runs, the index,
the gallery, untrusted prompts."""

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from blending import sweep
from blending.cli import main
from blending.sweep import ExperimentError, experiment_from_dict, load_experiment, run_sweep

SMALL = {
    "model": "embedded",
    "methods": ["switch", "unet"],
    "ratios": [0.5],
    "seeds": [0, 1, 2],
    "num_inference_steps": 3,
    "pairs": [
        {"prompt_1": "a large red circle", "prompt_2": "a small blue star", "category": "differ"},
        {"prompt_1": "a small yellow square", "prompt_2": "a large green triangle", "category": "differ"},
    ],
}


def write(tmp_path, data, name="experiment.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def rows(out: Path) -> list[tuple]:
    with sqlite3.connect(out / "index.sqlite") as connection:
        return connection.execute("SELECT * FROM images ORDER BY comparison, image").fetchall()


def test_the_shipped_experiments_load():
    paper = load_experiment("paper")
    assert (
        len(paper.pairs) == 20
        and len(paper.seeds) == 10
        and paper.methods == ("textual", "switch", "unet", "alternate")
    )
    assert {p.category for p in paper.pairs} == {"concrete pairs", "compound words", "scenes"}
    toy = load_experiment("toy")
    assert toy.model == "embedded" and len(sweep.comparisons(toy)) == 6


BAD = [
    ({"methods": ["blur"]}, "methods: unknown method 'blur'"),
    ({"ratios": [1.5]}, "ratios: must be in [0, 1]"),
    ({"seeds": [1.5]}, "seeds: every seed must be an integer"),
    ({"pairs": []}, "pairs: must be a non-empty list"),
    ({"pairs": [SMALL["pairs"][0], SMALL["pairs"][0]]}, "pairs[1]: duplicate pair"),
    ({"colour": "red"}, "colour: unknown key"),
    ({"pairs": [{"prompt_1": "a", "prompt_2": "b", "weight": 2}]}, "pairs[0].weight: unknown key"),
    ({"num_inference_steps": 0}, "num_inference_steps: must be an integer >= 1"),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_a_bad_file_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, change, message):
    with pytest.raises(ExperimentError, match=message.replace("[", "\\[").replace("]", "\\]")):
        experiment_from_dict({**SMALL, **change})
    out = tmp_path / "out"
    assert main(["sweep", str(write(tmp_path, {**SMALL, **change})), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not out.exists()


def test_a_sweep_indexes_every_image_and_a_rerun_redoes_nothing(sd1_pipe, tmp_path):
    experiment = experiment_from_dict({**SMALL, "num_inference_steps": 2})
    out = run_sweep(experiment, tmp_path / "run", pipe=sd1_pipe, progress=False)
    indexed = rows(out)
    assert len(indexed) == 2 * 3 * 4  # pairs x seeds x (2 plain + 2 methods)
    frame = sweep.load(out)
    assert set(frame.columns) >= {
        "comparison",
        "category",
        "prompt_1",
        "prompt_2",
        "image",
        "ratio",
        "switch_step",
        "seed",
        "path",
        "sha256",
    }
    assert sorted(frame["image"].unique()) == ["prompt_1", "prompt_2", "switch", "unet"]
    for path in frame["path"]:
        assert (out / path).is_file() and path.startswith("images/")
    modified = {p: (out / p).stat().st_mtime_ns for p in frame["path"]}
    run_sweep(experiment, out, pipe=None, progress=False)  # nothing left to do: no model is loaded
    assert rows(out) == indexed
    assert {p: (out / p).stat().st_mtime_ns for p in frame["path"]} == modified
    gallery = (out / "gallery.html").read_text()
    assert gallery.count("<img") == len(indexed) and 'src="images/' in gallery


def test_another_experiment_in_the_same_folder_is_refused_unless_forced(sd1_pipe, tmp_path):
    first = experiment_from_dict({**SMALL, "num_inference_steps": 2, "seeds": [0]})
    other = experiment_from_dict({**SMALL, "num_inference_steps": 2, "seeds": [5]})
    out = run_sweep(first, tmp_path / "run", pipe=sd1_pipe, progress=False)
    with pytest.raises(ExperimentError, match="another experiment's images.*--force"):
        run_sweep(other, out, pipe=sd1_pipe, progress=False)
    run_sweep(other, out, pipe=sd1_pipe, progress=False, force=True)
    assert set(sweep.load(out)["seed"]) == {5}


def test_untrusted_prompts_stay_text(sd1_pipe, tmp_path):
    prompts = ["../../etc/x", "<script>alert(1)</script>", "x" * 500]
    data = {**SMALL, "num_inference_steps": 1, "seeds": [0], "methods": ["textual"]}
    data["pairs"] = [{"prompt_1": prompts[0], "prompt_2": prompts[1], "category": "<b>bold</b>"}]
    data["pairs"].append({"prompt_1": prompts[2], "prompt_2": "/tmp/y", "category": "long"})
    out = run_sweep(experiment_from_dict(data), tmp_path / "run", pipe=sd1_pipe, progress=False)
    written = [p for p in (tmp_path).rglob("*") if p.is_file()]
    assert all(out in p.parents for p in written)
    assert all(len(part) < 100 for p in written for part in p.relative_to(out).parts)
    gallery = (out / "gallery.html").read_text()
    assert "<script>" not in gallery and "&lt;script&gt;alert(1)&lt;/script&gt;" in gallery
    assert "<b>bold</b>" not in gallery and "&lt;b&gt;bold&lt;/b&gt;" in gallery


def _cli(*args):
    return [sys.executable, "-m", "blending", "sweep", *map(str, args)]


def test_a_sweep_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path):
    experiment = write(tmp_path, {**SMALL, "num_inference_steps": 4})
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # one comparison per chunk, so that the kill comes between chunks as well as within one
    whole = tmp_path / "whole"
    subprocess.run(_cli(experiment, "--out", whole, "--max-batch-size", 4), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _cli(experiment, "--out", killed, "--max-batch-size", 4), env=env, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (killed / "index.sqlite").is_file() and 0 < len(_indexed(killed)) < 6 * 4:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    partly = len(_indexed(killed))
    assert 0 < partly < 6 * 4, partly  # killed mid-run
    subprocess.run(_cli(experiment, "--out", killed, "--max-batch-size", 4), check=True, env=env, capture_output=True)
    assert rows(killed) == rows(whole)
    for _, _, _, _, _, _, _, _, path, sha in rows(killed):
        assert hashlib.sha256((killed / path).read_bytes()).hexdigest() == sha
    leftovers = [p for p in (killed / "images").rglob("*") if p.is_file() and not p.name.endswith(".png")]
    assert all(p.name.startswith(".") and p.name.endswith(".tmp") for p in leftovers)


def _indexed(out: Path) -> list:
    try:
        with sqlite3.connect(out / "index.sqlite", timeout=5) as connection:
            return connection.execute("SELECT comparison, image FROM images").fetchall()
    except sqlite3.OperationalError:
        return []


def test_gallery_on_demand_and_errors_before_any_model(tmp_path, capsys, sd1_pipe):
    out = run_sweep(
        experiment_from_dict({**SMALL, "num_inference_steps": 1, "seeds": [0]}),
        tmp_path / "run",
        pipe=sd1_pipe,
        progress=False,
    )
    (out / "gallery.html").unlink()
    assert main(["sweep", "--gallery", str(out)]) == 0
    assert (out / "gallery.html").is_file()
    assert main(["sweep", "no-such-experiment", "--out", str(tmp_path / "x")]) == 2
    assert "experiment: no such file 'no-such-experiment'" in capsys.readouterr().err
    assert main(["sweep", "toy", "--out", "/proc/x/y"]) == 2
    assert "--out: cannot create" in capsys.readouterr().err


def test_two_processes_shard_the_comparisons_and_give_the_one_process_images(tmp_path):
    """accelerate launch with two processes on the CPU (over gloo; accelerate's --cpu alone
    starts one process): each runs every other chunk, into one index."""
    import numpy as np
    from PIL import Image

    experiment = write(tmp_path, {**SMALL, "num_inference_steps": 4})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(_cli(experiment, "--out", one, "--max-batch-size", 4), check=True, env=env, capture_output=True)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["-m", "blending", "sweep", str(experiment), "--out", str(two), "--max-batch-size", "4"]
    subprocess.run(launch, check=True, env=env, capture_output=True)
    rows_one, rows_two = rows(one), rows(two)
    assert [r[:-1] for r in rows_one] == [r[:-1] for r in rows_two]  # all but the PNGs' sha256
    for row in rows_one:
        mine = np.asarray(Image.open(one / row[8]), dtype=int)
        theirs = np.asarray(Image.open(two / row[8]), dtype=int)
        assert np.abs(mine - theirs).max() <= 1, row[8]  # float tolerance: one level of 255
    assert (two / "gallery.html").read_text().count("<img") == len(rows_one)


def test_scores_are_added_from_the_images_on_disk_also_after_a_sweep_without(sd1_pipe, tmp_path):
    from PIL import Image

    from blending import BlendResult
    from blending.scores import clip_scores, load_scorer

    experiment = experiment_from_dict({**SMALL, "num_inference_steps": 1, "seeds": [0, 1]})
    out = run_sweep(experiment, tmp_path / "run", pipe=sd1_pipe, progress=False)
    run_sweep(experiment, out, pipe=None, progress=False, score="embedded")  # nothing to draw, only to score
    with sqlite3.connect(out / "index.sqlite") as connection:
        scores = connection.execute(
            "SELECT comparison, image, text_1, coverage FROM scores ORDER BY comparison, image"
        ).fetchall()
    assert len(scores) == 2 * 2 * len(experiment.methods)
    comparison, method, text_1, coverage = scores[0]
    frame = sweep.load(out)
    own = frame[frame["comparison"] == comparison].set_index("image")
    pictures = {name: Image.open(out / own.loc[name, "path"]).convert("RGB") for name in own.index}
    result = BlendResult(
        pictures["prompt_1"],
        pictures["prompt_2"],
        {m: pictures[m] for m in experiment.methods},
        {"prompt_1": own["prompt_1"].iloc[0], "prompt_2": own["prompt_2"].iloc[0]},
    )
    expected = clip_scores(result, load_scorer("embedded"))[method]
    assert text_1 == pytest.approx(expected.text_1) and coverage == pytest.approx(expected.coverage)
    run_sweep(experiment, out, pipe=None, progress=False, score="embedded")
    with sqlite3.connect(out / "index.sqlite") as connection:
        assert connection.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == len(scores)
