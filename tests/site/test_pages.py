"""The built book as its readers read it: checks of the HTML itself, no browser needed.

Run with ``pytest tests/site --site _build/html`` (``make check`` does). On every page of the table
of contents: no sentence about how the project was built; on every chapter, the banner that names
the model first under the title, every figure with a caption, every picture described in words
(never by its file name), and none of the checks' machinery (parameters cells, nbval's cells).
"""

import re
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from .test_browser import toc_pages

CHAPTERS = [name for name in toc_pages() if name.startswith("notebooks/")]
#: Words that speak of how the project was built, not of the project.
PROCESS_WORDS = re.compile(r"\b(sessions?|lent|we have not seen)\b", re.IGNORECASE)
#: What the parameters cells and the nbval cells hold.
MACHINERY = ("NBVAL_CHECK_OUTPUT", "tag_parameters", "injected-parameters", "check_pictures(")
IMAGE_FILE = re.compile(r"\.(png|jpe?g|gif|svg|webp)$", re.IGNORECASE)


@pytest.fixture(scope="module")
def built(request) -> Path:
    path = request.config.getoption("--site")
    if path is None:
        pytest.skip("no --site given: build the book (make book) and pass --site _build/html")
    return path


def article(built: Path, name: str) -> BeautifulSoup:
    html = (built / f"{name}.html").read_text()
    main = BeautifulSoup(html, "html.parser").find("article", class_="bd-article")
    assert main is not None, f"{name}: no article in the page"
    return main


@pytest.mark.parametrize("name", toc_pages())
def test_no_page_speaks_of_how_it_was_built(built, name):
    text = article(built, name).get_text(" ")
    found = sorted({m.group(0) for m in PROCESS_WORDS.finditer(text)})
    assert found == [], f"{name}: {found} (say what the project is, not how it was built)"


@pytest.mark.parametrize("name", CHAPTERS)
def test_a_chapter_opens_with_the_banner_that_names_its_model(built, name):
    page = article(built, name)
    title = page.find("h1")
    # the first block a reader reads: a paragraph, an admonition, a figure, a table, code or a heading
    first = title.find_next(
        lambda tag: (
            (tag.name in ("p", "figure", "table", "pre", "h2") or "admonition" in tag.get("class", []))
            and tag.get_text(strip=True)
        )
    )
    assert first is not None and "admonition" in " ".join(first.get("class", [])), (
        f"{name}: the first thing under the title is {first and first.get_text(' ', strip=True)[:80]!r}, not the banner"
    )
    assert "Drawn by" in first.get_text(), f"{name}: the first admonition does not name the model"


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_figure_has_a_caption_and_every_picture_words(built, name):
    page = article(built, name)
    for image in page.find_all("img"):
        source, alt = image.get("src", ""), (image.get("alt") or "").strip()
        where = f"{name}: picture {source[:60]}"
        assert alt and not IMAGE_FILE.search(alt) and alt != source, f"{where}: alt text {alt!r} is not a description"
        if source.startswith("_images/") or "/_images/" in source:  # a figure a notebook drew
            figure = image.find_parent("figure")
            caption = figure and figure.find("figcaption")
            assert caption is not None and caption.get_text(strip=True), f"{where}: a figure without a caption"
            assert "Drawn by" in caption.get_text(), (
                f"{where}: the caption does not say which model drew it: {caption.get_text(strip=True)!r}"
            )


@pytest.mark.parametrize("name", CHAPTERS)
def test_the_checks_machinery_stays_off_the_page(built, name):
    html = str(article(built, name))
    shown = [marker for marker in MACHINERY if marker in html]
    assert shown == [], f"{name}: {shown} on the page (tag the cell remove-cell)"
    assert "pictures match their recorded fingerprints" not in html, f"{name}: a fingerprint line on the page"


def test_the_intro_says_which_models_drew_this_build(built):
    import json

    drawn = json.loads((Path(__file__).resolve().parents[2] / "notebooks" / "status.json").read_text())
    models = {entry["drawn"]["model"] for entry in drawn.values()}
    sentence = next(
        p.get_text(" ", strip=True)
        for p in article(built, "book/intro").find_all("p")
        if "In this build" in p.get_text()
    )
    for model in models:
        assert ("embedded toy model" if model == "embedded" else model) in sentence, sentence
    assert f"{len(drawn)} chapters" in sentence
