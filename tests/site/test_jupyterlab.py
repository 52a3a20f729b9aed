"""The chapters live in JupyterLab, as Binder users get them: headless Chromium, driven by Playwright.

Run with ``pytest tests/site --jupyterlab`` (``make check`` does). A JupyterLab server starts on
127.0.0.1 with Jupyter directories of its own, a python3 kernelspec that runs this environment's
Python, and copies of ``notebooks/`` with their outputs cleared (the chapters read ``fingerprints/``
and write ``figures/`` beside themselves). The browser is found as for the other site checks
(conftest.py): none skips, or under CI=true fails.

- The explorer chapter runs top to bottom without an error output, and its controls render as
  widgets (not "Loading widget..." or a text repr). A new prompt and another method, then
  Generate, draw a new triptych, and the kernel's last blend used them.
- Another chapter (01_methods, a fast one) runs top to bottom without an error output.

JupyterLab 4 renders an error output (a traceback) and a stderr stream alike, both as
``application/vnd.jupyter.stderr``, so the DOM cannot tell a failed cell from a library warning or a
progress bar, which are allowed. Errors are read from the notebook's model in the page instead
(``window.jupyterapp``, exposed for this), where their output type is ``error``. What a widget's
callback raises goes to JupyterLab's log console, which is open and read while Generate runs.
"""

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
EXPLORER = "05_explorer.ipynb"
OTHER_CHAPTER = "01_methods.ipynb"
NEW_PROMPT = "a small green star"  # not a default prompt of either model

# Bounds, not expectations: on 2 CPU cores the server answers in ~5 s, each chapter runs in
# ~15 s, and Generate draws in a few seconds.
SERVER_START_S = 60
OPEN_S = 60
RUN_ALL_S = 120
GENERATE_S = 60
WIDGETS_S = 20

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STDERR = '[data-mime-type="application/vnd.jupyter.stderr"]'

# The notebook panel for a path, from the app that --expose-app-in-browser puts on window.
_PANEL_JS = "path => [...window.jupyterapp.shell.widgets('main')].find(w => w.context && w.context.path === path)"

# Open, and its kernel connected and idle.
_READY_JS = f"""path => {{
    const panel = window.jupyterapp && ({_PANEL_JS})(path);
    const kernel = panel && panel.sessionContext.session && panel.sessionContext.session.kernel;
    return !!(panel && panel.context.isReady && kernel
              && kernel.connectionStatus === 'connected' && kernel.status === 'idle');
}}"""

# The code cells as the model has them: execution count, state, error outputs.
_CELLS_JS = f"""path => {{
    const panel = ({_PANEL_JS})(path);
    const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
    const cells = [...panel.content.model.cells].map((cell, index) => [cell, index])
        .filter(([cell]) => cell.type === 'code')
        .map(([cell, index]) => {{
            const outputs = [];
            for (let i = 0; i < cell.outputs.length; i++) outputs.push(cell.outputs.get(i).toJSON());
            return {{
                index,
                count: cell.executionCount,
                running: cell.executionState === 'running',
                errors: outputs.filter(o => o.output_type === 'error'),
            }};
        }});
    return {{kernel: kernel ? kernel.status : 'no kernel', cells}};
}}"""

# Run All is over: the kernel is idle, and every cell ran or one failed (which aborts the rest).
_DONE_JS = f"""path => {{
    const state = ({_CELLS_JS})(path);
    const failed = state.cells.some(c => c.errors.length);
    return state.kernel === 'idle' && (failed || state.cells.every(c => !c.running && c.count !== null));
}}"""

# The log console's error entries (what widget callbacks raise lands there).
_LOG_ERRORS_JS = """() => [...document.querySelectorAll('.jp-LogConsolePanel .jp-OutputArea-child')]
    .filter(child => ['error', 'critical'].includes(child.querySelector('[data-log-level]')?.dataset.logLevel))
    .map(child => child.innerText)"""

# The explorer's Output widget has a new, loaded image, or shows an error.
_NEW_TRIPTYCH_JS = f"""([before, errorsBefore]) => {{
    const output = document.querySelector('.widget-output');
    const image = output && output.querySelector('img');
    return !!(output && output.querySelector('{_STDERR}')) || ({_LOG_ERRORS_JS})().length > errorsBefore
        || !!(image && image.complete && image.naturalWidth > 0 && image.src !== before);
}}"""


@dataclass
class Lab:
    url: str
    token: str
    log: Path

    def api(self, path: str, method: str = "GET") -> None:
        request = urllib.request.Request(
            f"{self.url}/api/{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        urllib.request.urlopen(request, timeout=10).close()

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def copy_notebooks(destination: Path) -> None:
    """The chapters, with the folders beside them, their outputs cleared: every output seen is this run's."""
    shutil.copytree(NOTEBOOKS, destination, ignore=shutil.ignore_patterns("*.failed.ipynb", ".ipynb_checkpoints"))
    for path in destination.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(notebook, path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop(server: subprocess.Popen, lab: Lab) -> None:
    """Ask the server to shut down (it stops its kernels); terminate it, then kill it, if it does not."""
    try:
        lab.api("shutdown", method="POST")
        server.wait(timeout=20)
        return
    except (OSError, subprocess.TimeoutExpired):
        pass
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        server.send_signal(sig)
        try:
            server.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def waited(wait) -> bool:
    """Whether a Playwright wait saw its condition, rather than timing out."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        wait()
        return True
    except PlaywrightTimeout:
        return False


@pytest.fixture(scope="module")
def lab_requested(request):
    if not request.config.getoption("--jupyterlab"):
        pytest.skip("no --jupyterlab given: pytest tests/site --jupyterlab runs the chapters in JupyterLab")


@pytest.fixture(scope="module")
def lab(lab_requested, chromium, tmp_path_factory) -> Lab:
    """A JupyterLab server on copies of the notebooks, with this environment's Python as its kernel."""
    home = tmp_path_factory.mktemp("jupyterlab")
    copy_notebooks(home / "notebooks")
    # Jupyter directories of its own: no user settings, workspaces or kernelspecs leak in. JUPYTER_PATH
    # comes first in every search (even before a virtual environment's own), so this python3 is used.
    kernelspec = home / "share" / "kernels" / "python3"
    kernelspec.mkdir(parents=True)
    (kernelspec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            }
        )
    )
    # The announcements plugin asks, in a toast over the page, whether to fetch Jupyter's news.
    labconfig = home / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    env = {
        **os.environ,
        "JUPYTER_PATH": os.pathsep.join(filter(None, [str(home / "share"), os.environ.get("JUPYTER_PATH")])),
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
    }
    port = free_port()
    lab = Lab(f"http://127.0.0.1:{port}", secrets.token_hex(16), home / "server.log")
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--IdentityProvider.token={lab.token}",
        f"--ServerApp.root_dir={home / 'notebooks'}",
        "--expose-app-in-browser",  # window.jupyterapp: the notebooks' models, for their error outputs
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",  # offline
    ]
    if os.name == "posix" and os.geteuid() == 0:
        command.append("--allow-root")  # refused otherwise; containers often run as root
    with lab.log.open("wb") as log:
        server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode} before it answered:\n{lab.log_tail()}")
            try:
                lab.api("status")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer on {lab.url} within {SERVER_START_S} s:\n{lab.log_tail()}")
                time.sleep(0.2)  # a poll: the server has no other way to say it is up
        yield lab
    finally:
        stop(server, lab)


def open_notebook(chromium, lab: Lab, name: str):
    """A fresh page with the notebook open in JupyterLab, its kernel idle and this environment's Python."""
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(WIDGETS_S * 1000)
    page.goto(f"{lab.url}/lab/tree/{name}?reset&token={lab.token}")  # reset: this notebook alone
    if not waited(lambda: page.wait_for_function(_READY_JS, arg=name, timeout=OPEN_S * 1000)):
        pytest.fail(f"{name} did not open with an idle kernel within {OPEN_S} s; the server's log:\n{lab.log_tail()}")
    python = kernel_says(page, name, "import sys; print(sys.executable)").strip()
    assert python == sys.executable, f"{name}: the kernel runs {python!r}, not this environment's {sys.executable}"
    return page


def kernel_says(page, name: str, code: str) -> str:
    """What ``code`` prints when the notebook's kernel runs it outside any cell (errors as 'Name: value')."""
    try:
        return page.evaluate(
            f"""async ([path, code]) => {{
                const kernel = ({_PANEL_JS})(path).sessionContext.session.kernel;
                const future = kernel.requestExecute({{code, store_history: false}});
                let out = '';
                future.onIOPub = msg => {{
                    if (msg.header.msg_type === 'stream') out += msg.content.text;
                    if (msg.header.msg_type === 'error') out += msg.content.ename + ': ' + msg.content.evalue;
                }};
                const late = new Promise((_, reject) => setTimeout(() => reject(new Error('no reply in 20 s')), 20000));
                await Promise.race([future.done, late]);
                return out;
            }}""",
            [name, code],
        )
    except Exception as error:  # the page's error: a busy or dead kernel
        return f"(the kernel did not answer: {error})"


def run_all(page, lab: Lab, name: str) -> list[dict]:
    """Run > Run All Cells, and wait until it is over; the code cells as the model has them."""
    page.evaluate(
        f"""path => {{
            const panel = ({_PANEL_JS})(path);
            window.jupyterapp.shell.activateById(panel.id);
            window.jupyterapp.commands.execute('notebook:run-all-cells');  // not awaited: waited for below
        }}""",
        name,
    )
    if not waited(lambda: page.wait_for_function(_DONE_JS, arg=name, timeout=RUN_ALL_S * 1000, polling=250)):
        state = page.evaluate(_CELLS_JS, name)
        running = [cell["index"] for cell in state["cells"] if cell["running"]]
        not_run = [cell["index"] for cell in state["cells"] if cell["count"] is None and not cell["running"]]
        pytest.fail(
            f"{name}: Run All was not over within {RUN_ALL_S} s (kernel {state['kernel']}, cells still running"
            f" {running}, not run {not_run});"
            f" the server's log:\n{lab.log_tail()}"
        )
    return page.evaluate(_CELLS_JS, name)["cells"]


def traceback_end(error: dict) -> str:
    """An error output's last lines as the notebook shows them, without their colour codes."""
    return _ANSI.sub("", "\n".join(error["traceback"][-2:])) or f"{error['ename']}: {error['evalue']}"


def assert_ran_without_errors(name: str, cells: list[dict]) -> None:
    errors = [f"cell {cell['index']}: {traceback_end(error)}" for cell in cells for error in cell["errors"]]
    assert not errors, f"{name}: error outputs in JupyterLab:\n" + "\n\n".join(errors)
    not_run = [cell["index"] for cell in cells if cell["count"] is None]
    assert not not_run, f"{name}: code cells that did not run: {not_run}"


def visible(locator, what: str, seen) -> None:
    """Wait for ``locator`` to be visible; else fail, saying what the page shows instead."""
    if not waited(lambda: locator.first.wait_for(state="visible", timeout=WIDGETS_S * 1000)):
        pytest.fail(f"{what} is not shown as a widget within {WIDGETS_S} s; the explorer's cell shows: {seen()!r}")


@pytest.fixture(scope="module")
def explorer(lab, chromium):
    """The explorer chapter, run top to bottom with the log console open: its page and its code cells."""
    page = open_notebook(chromium, lab, EXPLORER)
    page.evaluate("() => window.jupyterapp.commands.execute('logconsole:open')")
    page.locator(".jp-LogConsolePanel").wait_for(state="attached")
    cells = run_all(page, lab, EXPLORER)
    yield page, cells
    page.close()


def widget_cell(page):
    """The explorer's widget cell, scrolled to: JupyterLab skips rendering cells out of view."""
    cell = page.locator(".jp-CodeCell", has_text="display(explorer.widget)")
    cell.scroll_into_view_if_needed()
    return cell


def test_the_explorer_runs_and_its_controls_render_as_widgets(explorer):
    page, cells = explorer
    assert_ran_without_errors(EXPLORER, cells)
    cell = widget_cell(page)

    def seen():
        return cell.locator(".jp-OutputArea").inner_text()

    visible(page.locator(".widget-text", has_text="Prompt 1").locator("input"), "the Prompt 1 text box", seen)
    visible(page.locator(".widget-text", has_text="Prompt 2").locator("input"), "the Prompt 2 text box", seen)
    visible(page.locator(".widget-dropdown", has_text="Method").locator("select"), "the Method selector", seen)
    visible(page.get_by_role("button", name="Generate"), "the Generate button", seen)
    visible(page.locator(".widget-output img"), "the first triptych", seen)
    errors = page.locator(f".widget-output {_STDERR}").all_inner_texts() + page.evaluate(_LOG_ERRORS_JS)
    assert not errors, "the explorer shows errors:\n" + "\n".join(errors)


def test_generate_draws_a_new_triptych_with_the_new_prompt_and_method(explorer):
    page, _ = explorer
    cell = widget_cell(page)
    output = page.locator(".widget-output")
    image = output.locator("img")
    visible(image, "the first triptych", lambda: cell.locator(".jp-OutputArea").inner_text())
    before, log_errors_before = image.get_attribute("src"), len(page.evaluate(_LOG_ERRORS_JS))
    method = page.locator(".widget-dropdown", has_text="Method").locator("select")
    other = next(option for option in method.locator("option").all_inner_texts() if option != method.input_value())
    page.locator(".widget-text", has_text="Prompt 1").locator("input").fill(NEW_PROMPT)
    method.select_option(other)
    page.get_by_role("button", name="Generate").click()

    drawn = waited(
        lambda: page.wait_for_function(
            _NEW_TRIPTYCH_JS, arg=[before, log_errors_before], timeout=GENERATE_S * 1000, polling=250
        )
    )
    errors = output.locator(_STDERR).all_inner_texts() + page.evaluate(_LOG_ERRORS_JS)[log_errors_before:]
    assert not errors, "Generate gave errors:\n" + "\n".join(errors)
    last_blend = kernel_says(page, EXPLORER, "s = explorer.result.settings; print(s['prompt_1'], s['methods'])")
    assert drawn, f"Generate drew no new triptych within {GENERATE_S} s; the kernel's last blend: {last_blend}"
    assert image.count() == 1, f"the output area holds {image.count()} images, not one triptych"
    assert last_blend.strip() == f"{NEW_PROMPT} ['{other}']", (
        f"the kernel's last blend is not prompt 1 {NEW_PROMPT!r} with {other!r}: {last_blend!r}"
    )


def test_another_chapter_runs_top_to_bottom(lab, chromium):
    page = open_notebook(chromium, lab, OTHER_CHAPTER)
    try:
        assert_ran_without_errors(OTHER_CHAPTER, run_all(page, lab, OTHER_CHAPTER))
    finally:
        page.close()
