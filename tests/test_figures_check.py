"""python -m blending.figures --check: regenerate elsewhere, compare every figure, touch nothing."""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from blending.figures import main, regenerate

DRAW = """\
import io
import numpy as np
from IPython.display import Image
from PIL import Image as PILImage
rng = np.random.default_rng(seed)
pixels = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # 64x64, 8x8 blocks
png = io.BytesIO()
PILImage.fromarray(pixels).save(png, format="png")
Image(data=png.getvalue())"""


@pytest.fixture
def drawn(tmp_path):
    """A notebook that draws one figure from its ``seed``, regenerated as the companion's are."""
    notebook = new_notebook(cells=[
        new_code_cell('model = "embedded"\nseed = 1', metadata={"tags": ["parameters"]}),
        new_code_cell(DRAW, metadata={"mystnb": {"figure": {"name": "fig-blocks"}}}),
    ])  # fmt: skip
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "blocks.ipynb")
    regenerate(notebooks=tmp_path)
    return tmp_path


def test_check_matches_a_faithful_rerun_and_touches_nothing(drawn, capsys):
    committed = (drawn / "blocks.ipynb").read_bytes()
    assert main(["--check", "--notebooks", str(drawn)]) == 0
    out, err = capsys.readouterr()
    assert "| blocks | fig-blocks | match | 0.0000 | identical |" in out
    assert "all 1 figures match" in err
    assert (drawn / "blocks.ipynb").read_bytes() == committed


def test_check_names_a_figure_that_a_changed_seed_would_change(drawn, capsys):
    notebook = nbformat.read(drawn / "blocks.ipynb", as_version=4)
    notebook.cells[0].source = 'model = "embedded"\nseed = 2'  # as a user edits the parameters cell
    nbformat.write(notebook, drawn / "blocks.ipynb")
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
