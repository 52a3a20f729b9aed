"""The notebooks' helpers, the explorer and the papermill regeneration."""

import json
import logging

import nbformat
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell, new_notebook
from PIL import Image

from blending import blend
from blending.companion import notebook as companion
from blending.companion.explorer import Explorer
from blending.companion.figures import NotebooksFailed, regenerate
from blending.plot import triptych

from .conftest import STEPS


@pytest.fixture
def name_pipe(sd1_pipe):
    """Names the shared pipeline as a loaded model would be named, and restores its name after."""
    original = sd1_pipe.name_or_path
    yield lambda name: sd1_pipe.register_to_config(_name_or_path=name)
    sd1_pipe.register_to_config(_name_or_path=original)


def test_denoising_frames_end_on_the_blend_itself(sd1_pipe):
    result, frames = companion.denoising_frames(
        sd1_pipe, "lion", "cat", "alternate", seed=3, num_inference_steps=STEPS, output_type="np", progress=False
    )
    assert len(frames) == STEPS
    assert np.abs(frames[-1] - result.blends["alternate"]).max() < 1e-5
    assert np.abs(frames[0] - frames[-1]).max() > 1e-3


def test_animation_is_a_gif_with_a_frame_per_step_and_playable_html(sd1_pipe, tmp_path):
    _, frames = companion.denoising_frames(sd1_pipe, "lion", "cat", "switch", num_inference_steps=STEPS, progress=False)
    html = companion.write_animation(frames, "SWITCH", tmp_path / "a.gif", model="embedded")
    assert Image.open(tmp_path / "a.gif").n_frames == STEPS
    assert "<script" in html.data and "animation" in html.data.lower()
    assert '<img alt="SWITCH: the picture after each denoising step. Drawn by the embedded toy model' in html.data


def test_figure_writes_the_png_it_shows(sd1_pipe, tmp_path):
    result = blend(sd1_pipe, "lion", "cat", ("unet",), num_inference_steps=STEPS, progress=False)
    image = companion.figure(triptych(result), tmp_path / "out", "unet", model="embedded")
    assert (tmp_path / "out" / "unet.png").read_bytes() == image.data


def test_a_figure_names_the_model_that_drew_it_below_its_pictures(sd1_pipe, tmp_path):
    result = blend(sd1_pipe, "lion", "cat", ("unet",), num_inference_steps=STEPS, progress=False)
    marked = triptych(result)
    companion.figure(marked, tmp_path, "marked", model="embedded")
    assert [t.get_text() for t in marked.texts] == ["Drawn by the embedded toy model, not Stable Diffusion"]
    plain = triptych(result)
    companion.figure(plain, tmp_path, "plain", model=None)
    assert plain.texts == []
    # the mark is drawn under the pictures, not over them
    with Image.open(tmp_path / "marked.png") as mark, Image.open(tmp_path / "plain.png") as no_mark:
        assert mark.height > no_mark.height
    assert companion.drawn_by("CompVis/stable-diffusion-v1-4") == "CompVis/stable-diffusion-v1-4"


def test_summary_has_a_line_per_image(sd1_pipe):
    result = blend(sd1_pipe, "lion", "cat", ("textual", "switch"), num_inference_steps=STEPS, progress=False)
    lines = companion.summary(result).splitlines()
    assert [line.split(":")[0].strip() for line in lines] == ["prompt_1", "prompt_2", "textual", "switch"]
    assert all("64x64, mean 0." in line for line in lines)


def test_the_banner_warns_only_for_the_embedded_model(sd1_pipe, name_pipe):
    name_pipe("embedded")
    assert "Smoke test" in companion.provenance(sd1_pipe).data
    name_pipe("CompVis/stable-diffusion-v1-4")
    banner = companion.provenance(sd1_pipe).data
    assert "Smoke test" not in banner and "CompVis/stable-diffusion-v1-4" in banner


def test_chapters_blend_toy_prompts_with_the_embedded_model_and_say_so(sd1_pipe, name_pipe):
    assert companion.chapter_prompts("embedded") == companion.TOY_PROMPTS
    assert companion.chapter_prompts("CompVis/stable-diffusion-v1-4") == ("lion", "cat")
    assert companion.chapter_prompts("embedded", "dog", None) == ("dog", companion.TOY_PROMPTS[1])  # overridable
    name_pipe("embedded")
    banner = companion.provenance(sd1_pipe, prompts=companion.TOY_PROMPTS).data
    assert "a pair of its toy world, in place of the paper's <code>lion</code>" in banner
    banner = companion.provenance(sd1_pipe, prompts=("lion", "cat")).data
    assert "the paper's prompts, which it does not know" in banner
    assert (
        "the paper's own prompts, which the embedded model does not know"
        in companion.provenance(sd1_pipe, paper_prompts=True).data
    )
    name_pipe("CompVis/stable-diffusion-v1-4")
    banner = companion.provenance(sd1_pipe, prompts=("lion", "cat")).data
    assert "It blends <code>lion</code> and <code>cat</code> (the parameters cell sets them)." in banner


def test_the_toy_world_chapter_refuses_other_models_and_says_its_results_are_measured(sd1_pipe, name_pipe):
    with pytest.raises(ValueError, match="^model: .*'CompVis/stable-diffusion-v1-4'"):
        companion.start_toy_world("CompVis/stable-diffusion-v1-4")
    name_pipe("embedded")
    banner = companion.provenance(sd1_pipe, toy_world=True).data
    assert "measured results about the toy world" in banner and "Smoke test" not in banner
    name_pipe("CompVis/stable-diffusion-v1-4")
    with pytest.raises(ValueError, match="^toy_world"):
        companion.provenance(sd1_pipe, toy_world=True)


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


def test_a_hand_set_switch_step_stays_when_the_ratio_moves(sd1_pipe):
    explorer = Explorer(sd1_pipe, "lion", "cat", ratio=0.5, num_inference_steps=STEPS)
    explorer.switch_step.value = 1
    explorer.ratio.value = 0.25
    explorer.method.value = "unet"
    explorer.method.value = "switch"
    assert explorer.switch_step.value == 1
    explorer.button.click()
    assert explorer.result.settings["switch_step"] == 1


def error_shown(explorer) -> str:
    (shown,) = explorer.output.outputs
    assert shown["output_type"] == "stream" and shown["name"] == "stderr"
    return shown["text"]


def test_generate_shows_bad_input_in_the_output_area(sd1_pipe):
    explorer = Explorer(sd1_pipe, "lion", "cat", num_inference_steps=STEPS)
    explorer.button.click()
    first = explorer.result
    explorer.prompt_1.value = "  "
    explorer.button.click()  # a button's callback must not raise into the void
    assert "Prompt 1 is empty" in error_shown(explorer)
    assert explorer.result is first and not explorer.button.disabled
    with pytest.raises(ValueError, match="Prompt 1"):
        explorer.generate()  # called from code, it raises as well


def test_generate_shows_a_value_error_of_blend_in_the_output_area(sd1_pipe):
    explorer = Explorer(sd1_pipe, "lion", "cat", num_inference_steps=STEPS, max_batch_size=2)
    explorer.button.click()  # one comparison is 3 images, which the progress callback must see together
    assert "max_batch_size must be at least 3" in error_shown(explorer)
    assert explorer.result is None


def test_generate_shows_out_of_memory_in_the_output_area(sd1_pipe, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr("blending.companion.explorer.blend", out_of_memory)
    explorer = Explorer(sd1_pipe, "lion", "cat", num_inference_steps=STEPS)
    explorer.button.click()
    assert error_shown(explorer).startswith("Could not generate: Out of memory on cpu")
    assert not explorer.button.disabled


@pytest.fixture
def tiny_notebook(tmp_path):
    notebook = new_notebook(
        cells=[
            new_code_cell(
                'model = "embedded"\ndevice = None\noutput_dir = "figures/probe"', metadata={"tags": ["parameters"]}
            ),
            new_code_cell(
                "import pathlib\npathlib.Path(output_dir).mkdir(parents=True, exist_ok=True)\n"
                "pathlib.Path(output_dir, 'model.txt').write_text(str(model))"
            ),
            new_code_cell("import ipywidgets\nipywidgets.IntSlider()"),
        ]
    )
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


def test_a_failed_run_leaves_the_committed_notebook_untouched(tiny_notebook):
    broken = new_notebook(cells=[new_code_cell("raise RuntimeError('boom')")])
    broken.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(broken, tiny_notebook / "broken.ipynb")
    committed = (tiny_notebook / "broken.ipynb").read_bytes()
    with pytest.raises(NotebooksFailed, match="broken") as failure:
        regenerate(notebooks=tiny_notebook)
    assert (tiny_notebook / "broken.ipynb").read_bytes() == committed
    failed_run = tiny_notebook / "broken.failed.ipynb"
    assert failure.value.failed == {"broken": failed_run}
    assert "boom" in json.dumps(nbformat.read(failed_run, as_version=4).cells[-1].outputs)
    manifest = json.loads((tiny_notebook / "figures" / "manifest.json").read_text())
    assert list(manifest["notebooks"]) == ["probe"] and manifest["failed"] == {"broken": str(failed_run)}
    # once it runs, the failed run goes, and it is never taken for a notebook of its own
    nbformat.write(
        new_notebook(cells=[new_code_cell("1 + 1")], metadata=broken.metadata), tiny_notebook / "broken.ipynb"
    )
    assert list(regenerate(notebooks=tiny_notebook)["notebooks"]) == ["broken", "probe"]
    assert not failed_run.exists()


def test_a_notebook_for_one_model_runs_with_it_whatever_is_asked(tiny_notebook, caplog):
    notebook = nbformat.read(tiny_notebook / "probe.ipynb", as_version=4)
    notebook.metadata["blending"] = {"only_model": "embedded"}
    nbformat.write(notebook, tiny_notebook / "probe.ipynb")
    with caplog.at_level(logging.INFO, logger="blending.companion.figures"):
        manifest = regenerate(model="some/model", notebooks=tiny_notebook)
    assert (tiny_notebook / "figures" / "probe" / "model.txt").read_text() == "embedded"
    assert manifest["model"] == "some/model" and manifest["notebooks"]["probe"]["model"] == "embedded"
    assert "runs with the embedded model only, not some/model" in caplog.text


def test_a_default_run_injects_no_parameters(tiny_notebook):
    regenerate(notebooks=tiny_notebook)
    notebook = nbformat.read(tiny_notebook / "probe.ipynb", as_version=4)
    assert not any("injected-parameters" in cell.metadata.get("tags", []) for cell in notebook.cells)


def test_glue_records_what_myst_nb_glue_records(monkeypatch):
    myst_nb = pytest.importorskip("myst_nb")
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *args, **kwargs: shown.append((args, kwargs)))
    monkeypatch.setattr("myst_nb.ext.glue.ipy_display", lambda *args, **kwargs: shown.append((args, kwargs)))
    companion.glue("points", 32)
    myst_nb.glue("points", 32, display=False)
    assert shown[0] == shown[1] and shown[0][0][0] == {"application/papermill.record/text/plain": "32"}


def test_distances_from_the_plain_images_are_zero_where_the_blend_is_one_of_them(sd1_pipe):
    ends = [
        blend(sd1_pipe, "lion", "cat", ("switch",), seed=1, switch_step=step, num_inference_steps=STEPS, progress=False)
        for step in (0, STEPS)
    ]
    (at_0_to_1, at_0_to_2), (at_end_to_1, at_end_to_2) = companion.distances_from_plain_images(ends, "switch")
    # equal up to the last bits that another batch composition can move (older PyTorch: 3e-7)
    assert at_0_to_2 < 1e-5 and at_0_to_1 > 0.001  # switching at once: prompt 2's image
    assert at_end_to_1 < 1e-5 and abs(at_end_to_2 - at_0_to_1) < 1e-5  # never switching: prompt 1's
