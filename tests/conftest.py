"""Tiny Stable-Diffusion-shaped pipelines, built in code under fixed seeds."""

from pathlib import Path

import pytest

from blending.embedded import tiny_pipeline

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


@pytest.fixture(scope="session", params=["sd1", "sd2"])
def pipe(request):
    """Each test that takes ``pipe`` runs on both U-Net shapes."""
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
