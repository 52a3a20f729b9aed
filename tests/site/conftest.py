"""The browser for the site checks, found in one place (the Makefile's ``browser`` target asks here too).

The order: ``CHROMIUM=/path/to/chrome`` if set, else ``chromium`` on the PATH, else Playwright's own
download (``python -m playwright install chromium``) if it is there. With none, the browser tests are
skipped, with one line that says how to enable them; under ``CI=true`` they fail instead.

``python -m tests.site.conftest`` prints the browser it finds, or that line (and exits with 1).
"""

import functools
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

import pytest

ENABLE = "apt-get install chromium, or .venv/bin/python -m playwright install chromium, or CHROMIUM=/path/to/chrome"


def missing_message() -> str:
    """The one line for a machine without a browser: a skip, or under CI a failure."""
    if in_ci():
        return f"No Chromium for the browser checks, and CI=true makes that a failure: {ENABLE}"
    return f"No Chromium found: the browser checks are skipped. To run them: {ENABLE}"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def find_chromium(playwright=None) -> str | None:
    """The Chromium to drive: $CHROMIUM, else ``chromium`` on the PATH, else Playwright's download."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    if on_path := shutil.which("chromium"):
        return on_path
    if playwright is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            return find_chromium(playwright)
    try:
        downloaded = playwright.chromium.executable_path
    except Exception:  # no path for this platform
        return None
    return downloaded if downloaded and Path(downloaded).is_file() else None


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(request):
    path = request.config.getoption("--site")
    if path is None:
        pytest.skip("no --site given: build the book (make book) and pass --site _build/html")
    if not (path / "index.html").is_file():
        pytest.fail(f"--site {path} holds no built book (no index.html)")
    handler = functools.partial(_QuietHandler, directory=str(path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def chromium():
    """Headless Chromium, launched with Playwright; skipped without one (under CI=true, a failure)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        executable = find_chromium(playwright)
        if executable is None:
            (pytest.fail if in_ci() else pytest.skip)(missing_message())
        if shutil.which(executable) is None:
            pytest.fail(f"CHROMIUM={executable}: no such executable")
        browser = playwright.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def browser(site, chromium):
    """The browser for the built book: ``site`` comes first, so no --site skips before any browser is sought."""
    return chromium


if __name__ == "__main__":
    found = find_chromium()
    if found is None:
        sys.exit(missing_message())  # to stderr, exit status 1
    print(f"Chromium for the browser checks: {found}")
