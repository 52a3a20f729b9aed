"""The committed record of how each chapter's pictures were drawn and checked: ``notebooks/status.json``.

``python -m blending.companion.figures`` records, for each chapter it draws, the model, the device, the
dtype, the library versions, the seconds and the date; ``python -m blending.companion.figures --check``
records whether the chapter's regenerated figures matched the committed ones. The book's *Status*
page shows the record (``book/_ext/status_table.py``), so the published site says who drew what.

The file is committed with the notebooks. So that a rerun changes nothing, an entry is rewritten
only when something other than its seconds and date changes: a rerun on the same machine that
draws the same pictures keeps the entry of the run that first drew them. New pictures (other
bytes, another model, device or library) replace it, and drop the last check, which checked
the pictures before them.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from pathlib import Path

__all__ = ["FILENAME", "pictures_digest", "read", "record_check", "record_drawn", "rows"]

FILENAME = "status.json"
# What may differ between two runs that drew the same pictures.
_RUN_DETAILS = ("seconds", "date")


def read(path: Path) -> dict:
    """The record, by chapter name; empty if there is none yet."""
    return json.loads(path.read_text()) if path.is_file() else {}


def _write(path: Path, status: dict) -> None:
    path.write_text(json.dumps(status, indent=2, sort_keys=True) + "\n")


def _today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def _same(old: dict | None, new: dict) -> bool:
    def essence(entry):
        return {k: v for k, v in entry.items() if k not in _RUN_DETAILS}

    return old is not None and essence(old) == essence(new)


def pictures_digest(notebook: Path) -> str:
    """The exact identity of a notebook's pictures: a hash of its PNG outputs' bytes."""
    import nbformat

    digest = hashlib.sha256()
    for cell in nbformat.read(notebook, as_version=4).cells:
        for output in cell.get("outputs", []):
            if "image/png" in output.get("data", {}):
                digest.update(output["data"]["image/png"].encode())
    return digest.hexdigest()[:16]


def record_drawn(
    path: Path, chapter: str, *, model: str, device: str, dtype: str, versions: dict, pictures: str, seconds: float
) -> bool:
    """Record that ``chapter`` was drawn; return whether the record changed."""
    status = read(path)
    entry = {
        "model": model,
        "device": device,
        "dtype": dtype,
        "versions": versions,
        "pictures": pictures,
        "seconds": round(seconds),
        "date": _today(),
    }
    if _same(status.get(chapter, {}).get("drawn"), entry):
        return False
    status[chapter] = {"drawn": entry}  # a check of the pictures before these no longer holds
    _write(path, status)
    return True


def record_check(path: Path, chapter: str, *, figures: int, differ: list[str], device: str, versions: dict) -> bool:
    """Record the result of ``--check`` for ``chapter``; return whether the record changed."""
    status = read(path)
    entry = {
        "matched": not differ,
        "figures": figures,
        "differ": differ,
        "device": device,
        "versions": versions,
        "date": _today(),
    }
    if chapter not in status or _same(status[chapter].get("check"), entry):
        return False
    status[chapter]["check"] = entry
    _write(path, status)
    return True


def _versions(versions: dict) -> str:
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def rows(status: dict, chapters: list[str]) -> list[dict[str, str]]:
    """One row of text per chapter, in the order given, for the *Status* page's table."""
    table = []
    for chapter in chapters:
        drawn, check = status.get(chapter, {}).get("drawn"), status.get(chapter, {}).get("check")
        if drawn is None:
            table.append(
                {
                    "chapter": chapter,
                    "model": "not recorded",
                    "device": "",
                    "libraries": "",
                    "seconds": "",
                    "drawn": "",
                    "check": "",
                }
            )
            continue
        if check is None:
            verdict = "not checked since drawn"
        else:
            where = f"{check['date']}, {check['device']}"
            if check["versions"] != drawn["versions"]:
                where += f"; {_versions(check['versions'])}"
            figures = f"{check['figures']} figure{'s' if check['figures'] != 1 else ''}"
            if check["matched"]:
                verdict = f"match: {'all ' if check['figures'] != 1 else ''}{figures} ({where})"
            else:
                verdict = f"DIFFERS: {len(check['differ'])} of {figures} ({', '.join(check['differ'])}; {where})"
        table.append(
            {
                "chapter": chapter,
                "model": drawn["model"],
                "device": f"{drawn['device']}, {drawn['dtype']}",
                "libraries": _versions(drawn["versions"]),
                "seconds": str(drawn["seconds"]),
                "drawn": drawn["date"],
                "check": verdict,
            }
        )
    return table
