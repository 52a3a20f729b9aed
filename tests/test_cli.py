"""The command line: files written, and one-line errors with exit code 2."""

import json
import logging
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from blending.cli import main


def test_blend_writes_the_images_the_triptych_and_the_settings(tmp_path):
    code = main(
        [
            "blend",
            "lion",
            "cat",
            "--methods",
            "switch",
            "--seed",
            "21",
            "--steps",
            "3",
            "--max-batch-size",
            "2",
            "--scheduler",
            "EulerAncestralDiscreteScheduler",
            "--generator-device",
            "cpu",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    for name in ("prompt_1", "prompt_2", "switch", "triptych_switch"):
        assert Image.open(tmp_path / f"{name}.png").size[0] > 0
    settings = json.loads((tmp_path / "settings.json").read_text())
    assert settings["seed"] == 21 and settings["methods"] == ["switch"] and settings["model"] == "embedded"
    assert settings["max_batch_size"] == 2 and settings["scheduler"] == "EulerAncestralDiscreteScheduler"
    assert settings["generator_device"] == "cpu"
    assert settings["elapsed_seconds"] > 0 and "torch" in settings["versions"] and settings["device"] == "cpu"


def test_blend_runs_an_sdxl_folder(sdxl_pipe, tmp_path):
    sdxl_pipe.save_pretrained(tmp_path / "sdxl", safe_serialization=True)
    argv = ["blend", "lion", "cat", "--model", str(tmp_path / "sdxl"), "--steps", "2", "--seed", "3"]
    code = main([*argv, "--methods", "unet", "--unet-pooled", "prompt_2", "--out", str(tmp_path / "out")])
    assert code == 0
    settings = json.loads((tmp_path / "out" / "settings.json").read_text())
    assert settings["pipeline"] == "StableDiffusionXLPipeline" and settings["unet_pooled"] == "prompt_2"
    assert Image.open(tmp_path / "out" / "unet.png").size == (64, 64)


@pytest.mark.parametrize(
    "argv",
    [
        ["blend", "lion"],
        ["blend", "lion", "cat", "--methods", "blur", "--out", "x"],
        ["blend", "lion", "cat", "--seed", "x", "--out", "x"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        main(argv)
    assert exit.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_bad_value_exits_2_with_one_line(tmp_path, capsys):
    assert main(["blend", "lion", "cat", "--ratio", "2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "blending: error: ratio must be a number in [0, 1], got 2.0"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ratio", "2"], "ratio must be a number in [0, 1], got 2.0"),
        (["--steps", "0"], "num_inference_steps must be an integer >= 1"),
        (["--seed", "-1"], "--seed must be an integer in [0, 2**64 - 1]"),
        (["--out", "/proc/no/such"], "--out: cannot create '/proc/no/such'"),
        (["--model", "./no/such/model"], "model: no such folder './no/such/model'"),
        (["--generator-device", "nonsense"], "generator_device must be a device such as 'cpu', 'cuda' or 'mps'"),
    ],
)
def test_arguments_are_checked_before_any_model_loads(argv, message, tmp_path, capsys, monkeypatch):
    import blending.loading

    loaded = []
    real = blending.loading._download
    monkeypatch.setattr(blending.loading, "_download", lambda *a: loaded.append(a) or real(*a))
    args = ["blend", "lion", "cat", "--out", str(tmp_path / "out"), *argv]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert loaded == []


def test_help_lists_both_subcommands_with_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "blending blend lion cat" in text and "blending sweep toy --out runs/toy" in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_generator_device_cuda_without_cuda_is_one_line_before_any_model_loads(tmp_path, capsys, monkeypatch):
    import blending.loading

    monkeypatch.setattr(blending.loading, "load_pipeline", lambda *a, **k: pytest.fail("loaded a model"))
    assert main(["blend", "lion", "cat", "--generator-device", "cuda", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["blending: error: generator_device: 'cuda' is not available on this machine; 'cpu' always is"]


def test_version_prints_the_package_version(capsys):
    import blending

    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out == f"blending {blending.__version__}\n"
    run = subprocess.run([sys.executable, "-m", "blending", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout == f"blending {blending.__version__}\n"


def test_an_error_inside_the_libraries_keeps_its_traceback(tmp_path, monkeypatch, capsys):
    """Only our InputError is one line and exit 2: a ValueError from diffusers is a bug to report."""
    import blending.sampling

    def fail(*args, **kwargs):
        raise ValueError("boom from diffusers")

    monkeypatch.setattr(blending.sampling, "_blend", fail)
    levels = {name: logging.getLogger(name).level for name in ("transformers", "diffusers.pipelines.pipeline_utils")}
    with pytest.raises(ValueError, match="boom from diffusers"):
        main(["blend", "lion", "cat", "--steps", "1", "--out", str(tmp_path)])
    assert "blending: error" not in capsys.readouterr().err
    # the libraries' logging is as it was, for whatever runs next in this process
    assert levels == {name: logging.getLogger(name).level for name in levels}


def _blending(*argv, tmp_path):
    """``python -m blending ARGV`` offline, with an empty Hugging Face cache."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    return subprocess.run([sys.executable, "-m", "blending", *argv], capture_output=True, text=True, env=env)


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--model", "./no/such/folder"], 2, "blending: error: model: no such folder './no/such/folder'"),
        (["--model", "embedded", "--ratio", "2"], 2, "blending: error: ratio must be a number in [0, 1], got 2.0"),
        (["--model", "nosuch/model"], 1, "blending: error: model 'nosuch/model' is not in the local Hugging Face"),
    ],
    ids=["no-folder", "bad-ratio", "uncached-model"],
)
def test_an_error_is_the_only_line_without_the_libraries_chatter(argv, code, message, tmp_path):
    run = _blending("blend", "lion", "cat", *argv, "--out", str(tmp_path / "out"), tmp_path=tmp_path)
    assert run.returncode == code
    assert len(run.stderr.splitlines()) == 1 and run.stderr.startswith(message), run.stderr
    assert run.stdout == ""


def test_a_run_still_logs_its_progress_and_the_libraries_warnings_about_the_images(tmp_path):
    run = _blending(
        "blend",
        " ".join(["lion"] * 30),
        "cat",
        "--methods",
        "switch",
        "--steps",
        "1",
        "--out",
        str(tmp_path),
        tmp_path=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "loaded embedded (StableDiffusionPipeline)" in run.stderr and "wrote 3 images to" in run.stderr
    assert "input was truncated" in run.stderr  # diffusers' own warning: the prompt is too long
    assert "torchvision" not in run.stderr and "[transformers]" not in run.stderr
