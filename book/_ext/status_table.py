"""The ``blending-status`` directive: the *Status* page's table, from the committed ``notebooks/status.json``.

One row per chapter of the book (every page under ``notebooks/``, numbered in the order of the
table of contents): the model that drew it, device and dtype, library versions, seconds, date, and what
the last ``python -m blending.companion.figures --check`` found (see :mod:`blending.companion.status`). The site is
built from committed files, so the table shows what the repository holds, wherever it is built.
"""

from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx import addnodes
from sphinx.util.docutils import SphinxDirective

from blending.companion import status
from blending.companion.notebook import drawn_by

COLUMNS = {
    "chapter": "Chapter",
    "model": "Drawn by",
    "device": "Device",
    "libraries": "Libraries",
    "seconds": "Seconds",
    "drawn": "Drawn on",
    "check": "Last check",
}


def _cell(content) -> nodes.entry:
    entry = nodes.entry()
    entry += content if isinstance(content, nodes.Node) else nodes.paragraph(text=content)
    return entry


def _summary(rows: list[dict[str, str]]) -> nodes.paragraph:
    """Which models drew this build's chapters, in one sentence."""
    by_model: dict[str, int] = {}
    for row in rows:
        by_model[row["model"]] = by_model.get(row["model"], 0) + 1
    parts = [f"{count} by {drawn_by(model)}" for model, count in by_model.items()]
    if len(parts) == 1:
        return nodes.paragraph(text=f"In this build, all {len(rows)} chapters were drawn by {drawn_by(*by_model)}.")
    return nodes.paragraph(
        text=f"In this build, of the {len(rows)} chapters, " + "; ".join(parts) + " drew the pictures."
    )


class StatusTable(SphinxDirective):
    """The table; with ``:summary:``, one sentence saying which models drew the chapters."""

    has_content = False
    option_spec = {"summary": directives.flag}

    def run(self):
        path = Path(self.env.srcdir) / "notebooks" / status.FILENAME
        self.env.note_dependency(str(path))  # a new record rebuilds the page
        # the book's chapters, numbered in the order of the table of contents
        chapters = sorted(d for d in self.env.found_docs if d.startswith("notebooks/"))
        rows = status.rows(status.read(path), [d.removeprefix("notebooks/") for d in chapters])
        if "summary" in self.options:
            return [_summary(rows)]
        columns, shown = dict(COLUMNS), []
        libraries = {row["libraries"] for row in rows if row["libraries"]}
        if len(libraries) == 1:  # one set of versions drew every chapter: say it once
            del columns["libraries"]
            shown.append(nodes.paragraph(text=f"Every chapter was drawn with {libraries.pop()}."))

        table = nodes.table(classes=["blending-status"])
        group = nodes.tgroup(cols=len(columns))
        table += group
        group.extend(nodes.colspec(colwidth=1) for _ in columns)
        head, body = nodes.thead(), nodes.tbody()
        head += nodes.row("", *(_cell(title) for title in columns.values()))
        for doc, row in zip(chapters, rows):
            link = addnodes.pending_xref("", refdomain="std", reftype="doc", reftarget="/" + doc, refexplicit=False)
            link += nodes.inline(text=doc)  # the chapter's title replaces it
            cells = [_cell(nodes.paragraph("", "", link))]
            cells.append(_cell(nodes.paragraph("", "", nodes.literal(text=row["model"]))))
            cells += [_cell(row[key]) for key in list(columns)[2:]]
            body += nodes.row("", *cells)
        group += head
        group += body
        return [*shown, table]


def setup(app):
    app.add_directive("blending-status", StatusTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
