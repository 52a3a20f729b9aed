"""notebooks/status.json: who drew each chapter and what the last --check found, stable under reruns."""

import json
from pathlib import Path

import pytest

from blending.companion import status
from blending.companion.figures import _drawn_by, main, regenerate
from blending.settings import library_versions

from .conftest import set_notebook_seed

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_drawing_records_model_device_versions_and_the_pictures(drawn):
    entry = status.read(drawn / "status.json")["blocks"]["drawn"]
    assert entry["model"] == "embedded"
    assert entry["device"].startswith("cpu (") and entry["dtype"] == "float32"
    assert entry["versions"] == library_versions()
    assert entry["pictures"] == status.pictures_digest(drawn / "blocks.ipynb")


def test_a_rerun_that_draws_the_same_pictures_changes_no_byte(drawn):
    before = (drawn / "status.json").read_bytes()
    regenerate(notebooks=drawn)
    assert (drawn / "status.json").read_bytes() == before


def test_new_pictures_replace_the_record_and_drop_the_check(drawn):
    assert main(["--check", "--notebooks", str(drawn)]) == 0
    assert status.read(drawn / "status.json")["blocks"]["check"]["matched"] is True
    old_pictures = status.read(drawn / "status.json")["blocks"]["drawn"]["pictures"]
    set_notebook_seed(drawn, 2)
    regenerate(notebooks=drawn)
    record = status.read(drawn / "status.json")["blocks"]
    assert record["drawn"]["pictures"] != old_pictures
    assert "check" not in record  # it checked the pictures before these


def test_check_records_which_figures_differ(drawn):
    set_notebook_seed(drawn, 2)  # the committed pictures were drawn with seed 1
    assert main(["--check", "--notebooks", str(drawn)]) == 1
    check = status.read(drawn / "status.json")["blocks"]["check"]
    assert check["matched"] is False and check["figures"] == 1 and check["differ"] == ["fig-blocks"]
    (row,) = status.rows(status.read(drawn / "status.json"), ["blocks"])
    assert row["check"].startswith("DIFFERS: 1 of 1 figure (fig-blocks; ")


def test_a_check_with_another_model_records_nothing(drawn):
    before = (drawn / "status.json").read_bytes()
    main(["--check", "--notebooks", str(drawn), "--model", "CompVis/stable-diffusion-v1-4"])
    assert (drawn / "status.json").read_bytes() == before


def test_rows_say_what_is_missing():
    drawn = {
        "model": "m",
        "device": "cpu (x86_64)",
        "dtype": "float32",
        "versions": {"torch": "2"},
        "pictures": "p",
        "seconds": 3,
        "date": "2026-01-01",
    }
    recorded = {
        "a": {"drawn": drawn},
        "b": {
            "drawn": drawn,
            "check": {
                "matched": True,
                "figures": 4,
                "differ": [],
                "device": "cuda (T4)",
                "versions": {"torch": "3"},
                "date": "2026-01-02",
            },
        },
    }
    rows = {row["chapter"]: row for row in status.rows(recorded, ["a", "b", "c"])}
    assert rows["a"]["check"] == "not checked since drawn"
    assert rows["b"]["check"] == "match: all 4 figures (2026-01-02, cuda (T4); torch 3)"
    assert rows["c"]["model"] == "not recorded"
    assert rows["a"]["device"] == "cpu (x86_64), float32" and rows["a"]["libraries"] == "torch 2"


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS.glob("[0-9]*.ipynb")), ids=lambda p: p.stem)
def test_the_committed_status_describes_the_committed_notebooks(notebook):
    """Notebooks committed without their status (or the reverse) would publish a false Status page."""
    record = json.loads((NOTEBOOKS / "status.json").read_text()).get(notebook.stem)
    assert record is not None, (
        f"notebooks/status.json has no record of {notebook.stem}: run python -m blending.companion.figures"
    )
    assert record["drawn"]["model"] == _drawn_by(notebook)
    assert record["drawn"]["pictures"] == status.pictures_digest(notebook), (
        f"{notebook.stem}'s pictures are not the ones notebooks/status.json records: commit both from one run"
    )
