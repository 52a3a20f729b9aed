"""blending sweep: experiment files checked before any work, resumable and safe runs, the index,
the gallery, untrusted prompts."""

import hashlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from blending.cli import main
from blending.experiments import runner
from blending.experiments.index import load
from blending.experiments.runner import prepare_index, run_sweep
from blending.experiments.schema import ExperimentError, comparisons, experiment_from_dict, load_experiment
from blending.settings import MAX_SEED

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
    assert len(paper.seeds) == 10 and paper.methods == ("textual", "switch", "unet", "alternate")
    categories = ["concrete concepts", "compound words", "artistic styles", "architectural landmarks"]
    assert {p.category for p in paper.pairs} == set(categories)
    assert {p.source for p in paper.pairs} == {"authors", "ours"} and paper.generator_device == "auto"
    toy = load_experiment("toy")
    assert toy.model == "embedded" and len(comparisons(toy)) == 6


BAD = [
    ({"methods": ["blur"]}, "methods: unknown method 'blur'"),
    ({"ratios": [1.5]}, "ratios: must be in [0, 1]"),
    ({"seeds": [1.5]}, "seeds: every seed must be an integer"),
    ({"seeds": [MAX_SEED + 1]}, "seeds: every seed must be an integer in [0, 2**64 - 1]"),
    ({"pairs": []}, "pairs: must be a non-empty list"),
    ({"pairs": [SMALL["pairs"][0], SMALL["pairs"][0]]}, "pairs[1]: duplicate pair"),
    ({"colour": "red"}, "colour: unknown key"),
    ({"pairs": [{"prompt_1": "a", "prompt_2": "b", "weight": 2}]}, "pairs[0].weight: unknown key"),
    ({"num_inference_steps": 0}, "num_inference_steps: must be an integer >= 1"),
    ({"ratios": [0.5, 0.25, 0.5]}, "ratios: a ratio is listed twice"),
    ({"generator_device": "gpu"}, "generator_device: must be one of ['auto', 'cpu', 'cuda', 'mps']"),
    ({"pairs": [{"prompt_1": "a", "prompt_2": "b", "source": "blog"}]}, "pairs[0].source: must be one of"),
]


def test_experiment_errors_are_input_errors():
    from blending import InputError

    assert issubclass(ExperimentError, InputError) and issubclass(ExperimentError, ValueError)


@pytest.mark.parametrize(("change", "message"), BAD)
def test_a_bad_file_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, change, message):
    with pytest.raises(ExperimentError, match=re.escape(message)):
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
    frame = load(out)
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
    assert set(load(out)["seed"]) == {5}


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


@pytest.mark.slow
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


@pytest.mark.slow
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
    from blending.scores.clip import clip_scores, load_scorer

    experiment = experiment_from_dict({**SMALL, "num_inference_steps": 1, "seeds": [0, 1]})
    out = run_sweep(experiment, tmp_path / "run", pipe=sd1_pipe, progress=False)
    run_sweep(experiment, out, pipe=None, progress=False, score="embedded")  # nothing to draw, only to score
    with sqlite3.connect(out / "index.sqlite") as connection:
        scores = connection.execute(
            "SELECT comparison, image, text_1, coverage FROM scores ORDER BY comparison, image"
        ).fetchall()
    assert len(scores) == 2 * 2 * len(experiment.methods)
    comparison, method, text_1, coverage = scores[0]
    frame = load(out)
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


def _forget(out: Path, comparison: str) -> None:
    """As if a run had been killed before ``comparison`` entered the index."""
    with sqlite3.connect(out / "index.sqlite") as connection:
        connection.execute("DELETE FROM images WHERE comparison = ?", (comparison,))


def _settings(out: Path) -> dict:
    import json

    with sqlite3.connect(out / "index.sqlite") as connection:
        return {k: json.loads(v) for k, v in connection.execute("SELECT key, value FROM settings")}


def test_a_paper_sized_sweep_holds_at_most_12_images_per_batch_by_default(sd1_pipe, tmp_path):
    from blending.testing.stock import batch_sizes

    assert runner.DEFAULT_MAX_BATCH_SIZE == 12
    paper = load_experiment("paper")
    one_pair = {**SMALL, "methods": list(paper.methods), "seeds": list(paper.seeds), "num_inference_steps": 1}
    experiment = experiment_from_dict({**one_pair, "pairs": SMALL["pairs"][:1]})  # 60 images
    sizes = batch_sizes(sd1_pipe.unet, lambda: run_sweep(experiment, tmp_path / "run", pipe=sd1_pipe, progress=False))
    assert max(sizes) == 2 * 12  # classifier-free guidance doubles the rows
    assert sum(sizes) == 2 * 60 and len(rows(tmp_path / "run")) == 60
    assert _settings(tmp_path / "run")["run"]["max_batch_size"] == 12


def test_the_run_settings_are_recorded_and_a_resume_otherwise_is_refused(sd1_pipe, tmp_path):
    experiment = experiment_from_dict({**SMALL, "num_inference_steps": 1})
    out = run_sweep(experiment, tmp_path / "run", pipe=sd1_pipe, max_batch_size=4, progress=False)
    run = _settings(out)["run"]
    assert run["max_batch_size"] == 4 and run["dtype"] == "float32" and run["device"] == "cpu"
    assert run["scheduler"] == "UniPCMultistepScheduler" and run["generator_device"] == "cpu"
    assert run["model"] is None  # what drew the images: a pipeline built in code, not the experiment's model
    assert {"blending", "diffusers", "torch"} <= run["versions"].keys()
    _forget(out, "0001-0-00-2")
    before = (rows(out), _settings(out), sorted(p.name for p in (out / "images").rglob("*")))
    with pytest.raises(ExperimentError, match=r"^max_batch_size: .* was drawn with 4, this run would use 8; .*--force"):
        run_sweep(experiment, out, pipe=sd1_pipe, max_batch_size=8, progress=False)
    with pytest.raises(ExperimentError, match=r"^model: .* was drawn with None, this run would use 'embedded'"):
        run_sweep(experiment, out, max_batch_size=4, progress=False)  # refused before the model loads
    assert (rows(out), _settings(out), sorted(p.name for p in (out / "images").rglob("*"))) == before
    run_sweep(experiment, out, pipe=sd1_pipe, max_batch_size=4, progress=False)  # as before: resumes
    assert len(rows(out)) == 2 * 3 * 4


def test_the_command_line_refuses_a_resume_with_other_settings_in_one_line(tmp_path, capsys):
    data = {**SMALL, "num_inference_steps": 1, "seeds": [0, 1], "pairs": SMALL["pairs"][:1]}
    experiment, out = write(tmp_path, data), tmp_path / "run"
    assert main(["sweep", str(experiment), "--out", str(out), "--max-batch-size", "4"]) == 0
    _forget(out, "0000-0-00-1")
    before = (rows(out), _settings(out))
    for change, key in [
        (["--max-batch-size", "8"], "max_batch_size"),
        (["--max-batch-size", "4", "--scheduler", "DDIMScheduler"], "scheduler"),
    ]:
        capsys.readouterr()
        assert main(["sweep", str(experiment), "--out", str(out), *change]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"blending: error: {key}: ") and "--force" in err
    assert (rows(out), _settings(out)) == before
    # --generator-device overrides the file's: on this CPU, cuda cannot draw the noise
    assert main(["sweep", str(experiment), "--out", str(out), "--generator-device", "cuda"]) == 2
    assert "generator_device: 'cuda', but the sweep runs on cpu" in capsys.readouterr().err


def test_force_starts_over_without_stale_scores_or_files(sd1_pipe, tmp_path):
    experiment = experiment_from_dict({**SMALL, "num_inference_steps": 1, "seeds": [0, 1]})
    out = run_sweep(experiment, tmp_path / "run", pipe=sd1_pipe, max_batch_size=4, progress=False, score="embedded")
    with sqlite3.connect(out / "index.sqlite") as connection:
        assert connection.execute("SELECT COUNT(*) FROM scores").fetchone()[0] > 0
    (out / "images" / "0000-0-00-0" / f".prompt_1.png.{os.getpid()}.tmp").write_bytes(b"left by a kill")
    first = {path: sha for *_, path, sha in rows(out)}
    # the same experiment, drawn otherwise: every image redrawn, and no score of the old ones stays
    run_sweep(experiment, out, pipe=sd1_pipe, max_batch_size=8, progress=False, force=True)
    with sqlite3.connect(out / "index.sqlite") as connection:
        assert connection.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 0
    assert _settings(out)["run"]["max_batch_size"] == 8 and set(first) == {path for *_, path, _ in rows(out)}
    assert not list((out / "images").rglob(".*.tmp"))
    other = experiment_from_dict({**SMALL, "num_inference_steps": 1, "seeds": [5]})
    run_sweep(other, out, pipe=sd1_pipe, progress=False, force=True)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["0000-0-00-5", "0001-0-00-5"]


def test_the_progress_bar_of_a_resumed_run_ends_at_its_total(sd1_pipe, tmp_path, monkeypatch):
    import tqdm.auto

    ends = []

    class Recorded(tqdm.auto.tqdm):
        def close(self):
            ends.append((self.n, self.total))
            super().close()

    experiment = experiment_from_dict({**SMALL, "num_inference_steps": 1})
    out = run_sweep(experiment, tmp_path / "run", pipe=sd1_pipe, progress=False)
    _forget(out, "0000-0-00-1")  # one of a chunk of three: the chunk is redrawn, one comparison written
    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)
    run_sweep(experiment, out, pipe=sd1_pipe, progress=True)
    assert set(ends) == {(6, 6)}  # closed once by the with block, once more by tqdm itself


def test_generator_device_auto_is_the_cpu_without_cuda_and_reaches_blend_seeds(sd1_pipe, tmp_path, monkeypatch):
    import blending.sampling

    calls = []
    original = blending.sampling.blend_seeds

    def recorded(*args, **kwargs):
        calls.append(kwargs["generator_device"])
        return original(*args, **kwargs)

    monkeypatch.setattr(blending.sampling, "blend_seeds", recorded)
    experiment = experiment_from_dict({**SMALL, "num_inference_steps": 1, "generator_device": "auto"})
    out = run_sweep(experiment, tmp_path / "run", pipe=sd1_pipe, progress=False)
    assert calls == ["cpu", "cpu"] and _settings(out)["run"]["generator_device"] == "cpu"
    assert _settings(out)["experiment"]["generator_device"] == "auto"
    with pytest.raises(ExperimentError, match="generator_device: 'cuda', but the sweep runs on cpu"):
        run_sweep(experiment, tmp_path / "other", pipe=sd1_pipe, generator_device="cuda", progress=False)


def test_the_gallery_shows_categories_in_the_experiments_order_and_each_pairs_source(sd1_pipe, tmp_path):
    data = {**SMALL, "num_inference_steps": 1, "seeds": [0], "methods": ["textual"]}
    data["pairs"] = [
        {"prompt_1": "zebra", "prompt_2": "street cross", "category": "compound words", "source": "authors"},
        {"prompt_1": "lion", "prompt_2": "cat", "category": "concrete concepts", "source": "ours"},
        {"prompt_1": "butter", "prompt_2": "fly", "category": "compound words"},
    ]
    experiment = experiment_from_dict(data)
    assert [c.source for c in comparisons(experiment)] == ["authors", "ours", None]
    out = run_sweep(experiment, tmp_path / "run", pipe=sd1_pipe, progress=False)
    gallery = (out / "gallery.html").read_text()
    assert gallery.index("<h2>compound words") < gallery.index("<h2>concrete concepts")
    assert gallery.count("<h2>") == 2 and gallery.count("(authors' pair)") == gallery.count("(ours)") == 1
    # each picture says what it is, never which file it is
    assert 'alt="the plain image of zebra, seed 0"' in gallery
    assert 'alt="the TEXTUAL blend of lion and cat, seed 0"' in gallery
    assert ".png" not in "".join(re.findall(r'alt="([^"]*)"', gallery))


def test_the_delete_journal_mode_for_network_drives(sd1_pipe, tmp_path):
    experiment = experiment_from_dict({**SMALL, "num_inference_steps": 1, "seeds": [0]})
    out = run_sweep(experiment, tmp_path / "run", pipe=sd1_pipe, progress=False, journal_mode="delete")
    with sqlite3.connect(out / "index.sqlite") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not (out / "index.sqlite-wal").exists() and len(rows(out)) == 2 * 4
    with pytest.raises(ExperimentError, match="journal_mode: must be one of"):
        run_sweep(experiment, tmp_path / "x", pipe=sd1_pipe, progress=False, journal_mode="memory")


def test_where_wal_cannot_be_set_the_sweep_goes_on_and_says_so(sd1_pipe, tmp_path, monkeypatch, caplog):
    from functools import partial

    class WithoutWal(sqlite3.Connection):
        """As on a network file system: asked for WAL, SQLite keeps the rollback journal."""

        def execute(self, sql, *args):
            return super().execute("PRAGMA journal_mode" if sql == "PRAGMA journal_mode=wal" else sql, *args)

    monkeypatch.setattr(sqlite3, "connect", partial(sqlite3.connect, factory=WithoutWal))
    experiment = experiment_from_dict({**SMALL, "num_inference_steps": 1, "seeds": [0]})
    out = run_sweep(experiment, tmp_path / "run", pipe=sd1_pipe, progress=False)
    assert len(rows(out)) == 2 * 4 and not (out / "index.sqlite-wal").exists()
    assert "kept journal mode delete, not wal" in caplog.text and "--journal-mode delete" in caplog.text


def test_a_failing_writer_stops_the_sweep_and_indexes_only_whole_comparisons(sd1_pipe, tmp_path, monkeypatch):
    written = []
    original = runner._write_png

    def full_disk(image, path):
        if len(written) == 5:
            raise OSError(28, "No space left on device")
        written.append(path)
        return original(image, path)

    monkeypatch.setattr(runner, "_write_png", full_disk)
    experiment = experiment_from_dict({**SMALL, "num_inference_steps": 1})
    with pytest.raises(OSError, match="No space left"):
        run_sweep(experiment, tmp_path / "run", pipe=sd1_pipe, max_batch_size=4, progress=False)
    assert [r[4] for r in rows(tmp_path / "run")] == ["prompt_1", "prompt_2", "switch", "unet"]


def test_two_processes_end_at_once_when_the_main_one_fails_before_the_barrier(tmp_path):
    """Another experiment's index in --out: the main process refuses it, and the other process
    must not wait for it at a barrier."""
    other = experiment_from_dict({**SMALL, "seeds": [7]})
    prepare_index(tmp_path / "two", other)
    experiment = write(tmp_path, {**SMALL, "num_inference_steps": 1})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launch += ["-m", "blending", "sweep", str(experiment), "--out", str(tmp_path / "two")]
    finished = subprocess.run(launch, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode != 0
    message = f"blending: error: out: {str(tmp_path / 'two')!r} holds another experiment's images"
    assert finished.stderr.count(message) == 2, finished.stderr[-3000:]  # each process, with the one message
    assert not (tmp_path / "two" / "images").exists()
