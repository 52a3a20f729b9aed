"""python -m blending.companion.figures --check: regenerate elsewhere, compare every figure, touch nothing."""

from blending.companion.figures import main, regenerate

from .conftest import set_notebook_seed


def test_check_matches_a_faithful_rerun_and_touches_nothing(drawn, capsys):
    committed = (drawn / "blocks.ipynb").read_bytes()
    assert main(["--check", "--notebooks", str(drawn)]) == 0
    out, err = capsys.readouterr()
    assert "| blocks | fig-blocks | match | 0.0000 | identical |" in out
    assert "all 1 figures match" in err
    assert (drawn / "blocks.ipynb").read_bytes() == committed


def test_check_names_a_figure_that_a_changed_seed_would_change(drawn, capsys):
    set_notebook_seed(drawn, 2)
    assert main(["--check", "--notebooks", str(drawn)]) == 1
    out, err = capsys.readouterr()
    assert "| blocks | fig-blocks | DIFFERS |" in out
    assert "1 of 1 figures differ from the committed ones: blocks: fig-blocks" in err


def test_check_with_no_such_notebook_is_a_bad_argument(drawn, capsys):
    assert main(["--check", "--notebooks", str(drawn), "--only", "nothing"]) == 2
    assert "no notebook to run" in capsys.readouterr().err


def test_make_books_regeneration_keeps_notebooks_another_model_drew(drawn, caplog):
    regenerate(model="CompVis/stable-diffusion-v1-4", notebooks=drawn)  # as a GPU run commits them
    drawn_by_sd = (drawn / "blocks.ipynb").read_bytes()
    manifest = regenerate(model="embedded", notebooks=drawn, keep_other_models=True)
    assert (drawn / "blocks.ipynb").read_bytes() == drawn_by_sd and manifest["notebooks"] == {}
    assert "drawn by CompVis/stable-diffusion-v1-4, not embedded: kept as committed" in caplog.text
    regenerate(model="embedded", notebooks=drawn)  # make figures MODEL=embedded: the explicit replacement
    assert (drawn / "blocks.ipynb").read_bytes() != drawn_by_sd
