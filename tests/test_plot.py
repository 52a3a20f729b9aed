"""The figures: panels, titles and PNG files."""

import pytest
from PIL import Image

from blending import blend
from blending.plot import comparison_grid, ratio_strip, triptych

from .conftest import STEPS


@pytest.fixture(scope="module", params=["pil", "np", "pt"])
def results(request, sd1_pipe):
    return [
        blend(
            sd1_pipe,
            "lion",
            "cat",
            ("switch", "unet"),
            ratio,
            seed=seed,
            num_inference_steps=STEPS,
            output_type=request.param,
            progress=False,
        )
        for seed, ratio in ((1, 0.25), (2, 0.75))
    ]


def titles(figure):
    return [ax.get_title() for ax in figure.axes]


def test_triptych_is_prompt_1_blend_prompt_2(results, tmp_path):
    figure = triptych(results[0], "unet", save=tmp_path / "t.png")
    assert titles(figure) == ['"lion"', "UNET (ratio 0.25)", '"cat"']
    assert Image.open(tmp_path / "t.png").format == "PNG"
    assert titles(triptych(results[0]))[1].startswith("SWITCH")


def test_a_switch_title_names_the_step_that_decided_the_blend(sd1_pipe):
    result = blend(
        sd1_pipe,
        "lion",
        "cat",
        ("switch", "textual"),
        0.25,
        switch_step=1,
        num_inference_steps=STEPS,
        output_type="np",
        progress=False,
    )
    assert titles(triptych(result, "switch"))[1] == "SWITCH, switch at step 1/4"
    assert titles(triptych(result, "textual"))[1] == "TEXTUAL (ratio 0.25)"


def test_grid_has_a_row_per_result_and_a_column_per_image(results, tmp_path):
    figure = comparison_grid(results, save=tmp_path / "g.png")
    assert len(figure.axes) == 2 * 4
    # at ratio 0.25 SWITCH switches after round(4 * 0.75) = 3 of the 4 steps
    assert titles(figure)[:4] == ['"lion"', '"cat"', "SWITCH, switch at step 3/4", "UNET (ratio 0.25)"]
    assert [figure.axes[0].get_ylabel(), figure.axes[4].get_ylabel()] == ["seed 1", "seed 2"]
    assert (tmp_path / "g.png").stat().st_size > 0


def test_ratio_strip_has_one_panel_per_ratio(results):
    assert titles(ratio_strip(results, "switch")) == ["ratio 0.25", "ratio 0.75"]


def test_plot_errors_name_the_problem(results):
    with pytest.raises(ValueError, match="method 'textual'"):
        triptych(results[0], "textual")
    with pytest.raises(ValueError, match="results"):
        comparison_grid([])
