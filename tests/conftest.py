"""Tiny pipelines of every family, built in code under fixed seeds."""

from blending.companion import numerics

# before PyTorch loads: the tests that compare with committed results draw on the pinned paths
numerics.pin()

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from blending.testing.pipelines import (  # noqa: E402
    tiny_flux_pipeline,
    tiny_pipeline,
    tiny_sd3_pipeline,
    tiny_sdxl_pipeline,
)

#: Few steps keep every test fast; the invariants do not depend on the count.
STEPS = 4


def _quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def sd1_pipe():
    return _quiet(tiny_pipeline("sd1", seed=0))


@pytest.fixture(scope="session")
def sd2_pipe():
    return _quiet(tiny_pipeline("sd2", seed=0))


@pytest.fixture(scope="session")
def sdxl_pipe():
    return _quiet(tiny_sdxl_pipeline(seed=0))


@pytest.fixture(scope="session")
def sd3_pipe():
    return _quiet(tiny_sd3_pipeline(seed=0))


@pytest.fixture(scope="session")
def flux_pipe():
    """FLUX.1 dev's shape: guidance-distilled."""
    return _quiet(tiny_flux_pipeline("dev", seed=0))


@pytest.fixture(scope="session")
def flux_schnell_pipe():
    """FLUX.1 schnell's shape: no guidance."""
    return _quiet(tiny_flux_pipeline("schnell", seed=0))


@pytest.fixture(scope="session", params=["sd1", "sd2", "sdxl", "sd3", "flux", "flux_schnell"])
def pipe(request):
    """Each test that takes ``pipe`` runs on every family's shape: SD 1.x, SD 2.x, SDXL, SD3, FLUX.1
    dev and schnell."""
    return request.getfixturevalue(f"{request.param}_pipe")


@pytest.fixture(scope="session", params=["sd1", "sd2", "sdxl"])
def unet_pipe(request):
    """The U-Net families' shapes, for what needs a U-Net (UNET, its attention processors)."""
    return request.getfixturevalue(f"{request.param}_pipe")


@pytest.fixture(scope="session", params=["sd1", "sd2", "sdxl", "sd3"])
def cfg_pipe(request):
    """The families with classifier-free guidance (unconditional rows, negative prompts)."""
    return request.getfixturevalue(f"{request.param}_pipe")


@pytest.fixture(scope="session", params=["sd1", "sd2"])
def sd_pipe(request):
    """SD 1.x's and SD 2.x's shapes, for what only StableDiffusionPipeline has."""
    return request.getfixturevalue(f"{request.param}_pipe")


def pytest_addoption(parser):
    parser.addoption(
        "--site",
        type=Path,
        default=None,
        help="the built book (e.g. _build/html) to check in a browser; without it the browser checks are skipped",
    )
    parser.addoption(
        "--jupyterlab",
        action="store_true",
        help="run the chapters in JupyterLab in a browser (tests/site/test_jupyterlab.py); without it that check is skipped",
    )


# A notebook that draws one 64x64 figure of 8x8 random blocks from its ``seed`` parameter.
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


def set_notebook_seed(folder: Path, seed: int) -> None:
    """Edit ``folder/blocks.ipynb``'s parameters cell, as a user would."""
    import nbformat

    notebook = nbformat.read(folder / "blocks.ipynb", as_version=4)
    notebook.cells[0].source = f'model = "embedded"\nseed = {seed}'
    nbformat.write(notebook, folder / "blocks.ipynb")


@pytest.fixture
def drawn(tmp_path):
    """A notebook that draws one figure from its ``seed``, regenerated as the companion's are."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from blending.companion.figures import regenerate

    notebook = new_notebook(
        cells=[
            new_code_cell('model = "embedded"\nseed = 1', metadata={"tags": ["parameters"]}),
            new_code_cell(DRAW, metadata={"mystnb": {"figure": {"name": "fig-blocks"}}}),
        ]
    )
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "blocks.ipynb")
    regenerate(notebooks=tmp_path)
    return tmp_path
