"""The notebooks' helpers, the explorer and the papermill regeneration."""

import json

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from PIL import Image

from blending import blend, companion
from blending.explorer import Explorer
from blending.figures import regenerate
from blending.plot import triptych

from .conftest import STEPS


def test_denoising_frames_end_on_the_blend_itself(sd1_pipe):
    result, frames = companion.denoising_frames(
        sd1_pipe, "lion", "cat", "alternate", seed=3, num_inference_steps=STEPS, output_type="np", progress=False
    )
    assert len(frames) == STEPS
    assert np.abs(frames[-1] - result.blends["alternate"]).max() < 1e-5
    assert np.abs(frames[0] - frames[-1]).max() > 1e-3


def test_animation_is_a_gif_with_a_frame_per_step_and_playable_html(sd1_pipe, tmp_path):
    _, frames = companion.denoising_frames(sd1_pipe, "lion", "cat", "switch", num_inference_steps=STEPS, progress=False)
    html = companion.write_animation(frames, "SWITCH", tmp_path / "a.gif")
    assert Image.open(tmp_path / "a.gif").n_frames == STEPS
    assert "<script" in html.data and "animation" in html.data.lower()


def test_figure_writes_the_png_it_shows(sd1_pipe, tmp_path):
    result = blend(sd1_pipe, "lion", "cat", ("unet",), num_inference_steps=STEPS, progress=False)
    image = companion.figure(triptych(result), tmp_path / "out", "unet")
    assert (tmp_path / "out" / "unet.png").read_bytes() == image.data


def test_summary_has_a_line_per_image(sd1_pipe):
    result = blend(sd1_pipe, "lion", "cat", ("textual", "switch"), num_inference_steps=STEPS, progress=False)
    lines = companion.summary(result).splitlines()
    assert [line.split(":")[0].strip() for line in lines] == ["prompt_1", "prompt_2", "textual", "switch"]
    assert all("64x64, mean 0." in line for line in lines)


def test_the_banner_warns_only_for_the_embedded_model(sd1_pipe):
    sd1_pipe.register_to_config(_name_or_path="embedded")
    assert "Smoke test" in companion.provenance(sd1_pipe).data
    sd1_pipe.register_to_config(_name_or_path="CompVis/stable-diffusion-v1-4")
    banner = companion.provenance(sd1_pipe).data
    assert "Smoke test" not in banner and "CompVis/stable-diffusion-v1-4" in banner


def test_the_explorer_blends_on_generate_and_tracks_progress(sd1_pipe):
    explorer = Explorer(sd1_pipe, "lion", "cat", method="unet", num_inference_steps=STEPS)
    assert explorer.switch_step.disabled
    explorer.method.value = "switch"
    explorer.ratio.value = 0.25
    assert not explorer.switch_step.disabled and explorer.switch_step.value == round(STEPS * 0.75)
    explorer.button.click()
    assert explorer.progress.value == STEPS
    assert list(explorer.result.blends) == ["switch"]
    assert explorer.result.settings["switch_step"] == round(STEPS * 0.75)
    assert len(explorer.output.outputs) == 1


@pytest.fixture
def tiny_notebook(tmp_path):
    notebook = new_notebook(cells=[
        new_code_cell('model = "embedded"\ndevice = None\noutput_dir = "figures/probe"', metadata={"tags": ["parameters"]}),
        new_code_cell("import pathlib\npathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)\n"
                      "pathlib.Path(output_dir, 'model.txt').write_text(str(model))"),
        new_code_cell("import ipywidgets\nipywidgets.IntSlider()"),
    ])  # fmt: skip
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "probe.ipynb")
    return tmp_path


def test_regenerate_runs_notebooks_in_place_and_writes_a_manifest(tiny_notebook):
    manifest = regenerate(model="some/model", notebooks=tiny_notebook)
    assert (tiny_notebook / "figures" / "probe" / "model.txt").read_text() == "some/model"
    written = json.loads((tiny_notebook / "figures" / "manifest.json").read_text())
    assert written == manifest
    entry = manifest["notebooks"]["probe"]
    assert entry["parameters"] == {"model": "some/model", "device": None, "output_dir": "figures/probe"}
    assert entry["figures"] == ["figures/probe/model.txt"] and entry["seconds"] > 0
    assert manifest["model"] == "some/model" and "torch" in manifest["versions"]
    notebook = nbformat.read(tiny_notebook / "probe.ipynb", as_version=4)
    assert "papermill" not in notebook.metadata  # no per-run timestamps in the committed file
    assert "widgets" not in notebook.metadata and notebook.cells[-1].outputs == []  # no live widget state


def test_a_default_run_injects_no_parameters(tiny_notebook):
    regenerate(notebooks=tiny_notebook)
    notebook = nbformat.read(tiny_notebook / "probe.ipynb", as_version=4)
    assert not any("injected-parameters" in cell.metadata.get("tags", []) for cell in notebook.cells)
