"""The built book in a real browser: headless Chromium, driven by Playwright.

Run with ``pytest tests/site --site _build/html``; conftest.py serves the site and finds the
browser (CHROMIUM, else ``chromium`` on the PATH, else Playwright's download; without one the tests
are skipped, or under CI=true fail). Every page of the table of contents must load without console
errors, with every image loaded and, on the notebook pages, the launch buttons and the banner that
names the model. Requests that leave the machine (a CDN, say) are refused, and only they may fail:
the book must work from its own files.
"""

from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "_build" / "screenshots"
FIGURES_PAGE = "notebooks/02_published_figures"


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def open_page(browser, site, name):
    """Load a page; return it with its console errors and the outside requests it made."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    local = urlparse(site).netloc
    outside, errors = [], []

    def route(route):
        if urlparse(route.request.url).netloc in (local, ""):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and errors.append((m.text, m.location.get("url", ""))))
    page.on("pageerror", lambda e: errors.append((str(e), "")))
    response = page.goto(f"{site}/{name}.html", wait_until="load")
    assert response is not None and response.ok, f"{name}: HTTP {response and response.status}"
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # let lazy images load
    page.wait_for_load_state("networkidle")
    own_errors = [text for text, url in errors if not any(url.startswith(o) for o in outside)]
    return page, own_errors


@pytest.mark.parametrize("name", toc_pages())
def test_every_page_loads_with_its_images_and_no_console_errors(browser, site, name):
    page, errors = open_page(browser, site, name)
    assert errors == [], f"{name}: console errors {errors}"
    images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])")
    broken = [src for src, width in images if width == 0]
    assert broken == [], f"{name}: images that did not load: {broken}"
    if name.startswith("notebooks/"):
        assert images, f"{name}: a figure page without images"
        assert page.get_by_text("Drawn by").first.is_visible(), f"{name}: no visible banner naming the model"
        for launcher in ("mybinder.org", "colab.research.google.com"):
            links = page.eval_on_selector_all(f"a[href*='{launcher}']", "links => links.map(l => l.href)")
            assert any(link.endswith(f"{name}.ipynb") or f"{name}.ipynb" in link for link in links), (
                f"{name}: no {launcher} launch button for {name}.ipynb"
            )
    page.close()


def test_the_figures_page_shows_every_published_figure(browser, site):
    page, _ = open_page(browser, site, FIGURES_PAGE)
    captions = page.eval_on_selector_all("figure figcaption", "cs => cs.map(c => c.innerText)")
    for pair in ("lion", "fish", "frog", "penguin", "desk lamp", "motherboard", "dog"):
        assert any(pair in caption for caption in captions), f"no captioned figure for {pair!r}"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "published_figures.png", full_page=True)
    assert (SCREENSHOTS / "published_figures.png").stat().st_size > 0
    page.close()


def test_a_toy_sweeps_gallery_opens_with_every_image(browser, tmp_path):
    """blending sweep toy --out DIR, then DIR/gallery.html from disk, as a user would open it."""
    import subprocess
    import sys

    out = tmp_path / "runs" / "toy"
    subprocess.run(
        [sys.executable, "-m", "blending", "sweep", "toy", "--out", str(out)], check=True, capture_output=True
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto((out / "gallery.html").as_uri(), wait_until="load")
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")  # let lazy images load
    page.wait_for_load_state("networkidle")
    images = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert len(images) == 36 and errors == []  # 3 pairs x 2 seeds x (2 plain + 4 methods)
    assert [src for src, width in images if width == 0] == []
    assert page.locator("h2").count() == 2  # the toy experiment's two categories
