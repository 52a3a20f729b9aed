"""``DIR/gallery.html``, a sweep's contact sheet, written from the folder's index: a section per
category, a row per comparison (both plain images and each method's blend), every prompt escaped
as text and every picture described in words (its ``alt`` text)."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

__all__ = ["gallery_html", "write_gallery"]


def write_gallery(out: str | os.PathLike) -> Path:
    """``out/gallery.html``: one section per category (in the experiment's order), one row per
    comparison (prompt 1, prompt 2, each method; the pair's source in a note), images referenced
    relatively, every prompt escaped as text."""
    out = Path(out)
    path = out / "gallery.html"
    temporary = path.with_name(f".gallery.html.{os.getpid()}.tmp")
    temporary.write_text(gallery_html(out), encoding="utf-8")
    os.replace(temporary, path)
    return path


_SOURCE_NOTES = {"authors": " (authors' pair)", "ours": " (ours)"}


def _alt(image: str, prompt_1: str, prompt_2: str, seed: str) -> str:
    """A gallery picture in words: what a screen reader says, and what a broken image shows."""
    from html import escape

    plain = {"prompt_1": prompt_1, "prompt_2": prompt_2}
    what = (
        f"the plain image of {plain[image]}"
        if image in plain
        else f"the {image.upper()} blend of {prompt_1} and {prompt_2}"
    )
    return escape(f"{what}, seed {seed}")


def gallery_html(out: str | os.PathLike, *, inline: bool = False) -> str:
    """The gallery of :func:`write_gallery` as text; with ``inline``, the images are embedded as
    data URIs (for a notebook or a page that does not ship the folder)."""
    import base64
    from html import escape

    out = Path(out)

    def source(path: str) -> str:
        if not inline:
            return escape(path)
        return "data:image/png;base64," + base64.b64encode((out / path).read_bytes()).decode("ascii")

    with sqlite3.connect(out / "index.sqlite") as connection:
        rows = connection.execute(
            "SELECT comparison, category, prompt_1, prompt_2, image, path FROM images ORDER BY comparison"
        ).fetchall()
        stored = dict(connection.execute("SELECT key, value FROM settings").fetchall())
    experiment = json.loads(stored.get("experiment", "{}"))
    pairs = experiment.get("pairs", [])
    columns = ["prompt_1", "prompt_2", *experiment.get("methods", [])]
    by_comparison: dict[str, dict] = {}
    for comparison, category, prompt_1, prompt_2, image, path in rows:
        entry = by_comparison.setdefault(
            comparison, {"category": category, "prompts": (prompt_1, prompt_2), "images": {}}
        )
        entry["images"][image] = path
    # the categories in the experiment's order of first appearance
    sections: dict[str, list[str]] = {pair.get("category", ""): [] for pair in pairs}
    for comparison, entry in sorted(by_comparison.items()):
        prompt_1, prompt_2 = (escape(p) for p in entry["prompts"])
        pair, seed = int(comparison.split("-", 1)[0]), comparison.rsplit("-", 1)[-1]
        cells = "".join(
            f'<td><img src="{source(entry["images"][c])}" alt="{_alt(c, *entry["prompts"], seed)}" loading="lazy"></td>'
            if c in entry["images"]
            else "<td></td>"
            for c in columns
        )
        origin = _SOURCE_NOTES.get(pairs[pair].get("source") if pair < len(pairs) else None, "")
        sections.setdefault(entry["category"], []).append(
            f"<tr><th>{prompt_1} / {prompt_2}<br><small>seed {escape(seed)}{origin}</small></th>{cells}</tr>"
        )
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in columns)
    body = "".join(
        f"<h2>{escape(category or 'pairs')}</h2><table><tr><th></th>{head}</tr>{''.join(lines)}</table>"
        for category, lines in sections.items()
        if lines
    )
    style = "img{width:128px;height:128px}td,th{padding:2px;font-weight:normal;text-align:left}"
    if inline:
        return f"<div><style>{style}</style>{body}</div>"
    run = json.loads(stored.get("run", "{}"))
    title = escape(f"blending sweep: {run.get('model') or experiment.get('model', '')}")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>body{{font-family:sans-serif}}{style}</style></head><body><h1>{title}</h1>{body}</body></html>\n"
    )
