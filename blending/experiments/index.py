"""The index of a sweep's folder, ``DIR/index.sqlite``: one row per image (``images``), the
blends' CLIP scores (``scores``), and the experiment and how its images were drawn
(``settings``). :func:`load` reads the images' rows as a pandas DataFrame.

Images live at ``DIR/images/<comparison>/<image>.png``, where the comparison's name is made of
numbers only: prompts never become paths. A comparison enters the index only once all its images
are on disk, in one transaction.

How a run draws (model, ``max_batch_size``, dtype, device, scheduler, generator device, library
versions) is recorded in the index's ``settings`` table under ``run``; a rerun that would draw
otherwise is refused, so that the images of one index all come from one way of running.
``force`` starts over: the previous images, scores and PNG files are deleted first.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path

from .schema import Comparison, Experiment, ExperimentError, experiment_from_dict

__all__ = ["JOURNAL_MODES", "done_and_todo", "load", "open_index", "record_or_refuse_run_settings"]

logger = logging.getLogger(__name__)

#: The SQLite journal modes an index can use. WAL lets several processes write at once, but needs a
#: file system with shared memory (not network ones such as a Google Drive mounted in Colab).
JOURNAL_MODES = ("wal", "delete")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    comparison TEXT NOT NULL, category TEXT NOT NULL, prompt_1 TEXT NOT NULL, prompt_2 TEXT NOT NULL,
    image TEXT NOT NULL, ratio REAL NOT NULL, switch_step INTEGER, seed TEXT NOT NULL,
    path TEXT NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (comparison, image)
);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scores (
    comparison TEXT NOT NULL, image TEXT NOT NULL, scorer TEXT NOT NULL,
    text_1 REAL, text_2 REAL, image_1 REAL, image_2 REAL, coverage REAL, balance REAL,
    PRIMARY KEY (comparison, image, scorer)
);
"""


def _connect(out: Path, journal_mode: str = "wal") -> sqlite3.Connection:
    """The index, created if need be, in ``journal_mode``. Where WAL cannot be set, SQLite keeps
    another mode and says which: the sweep goes on in it, with a warning."""
    if journal_mode not in JOURNAL_MODES:
        raise ExperimentError(f"journal_mode: must be one of {list(JOURNAL_MODES)}, got {journal_mode!r}")
    connection = sqlite3.connect(out / "index.sqlite", timeout=60)
    try:
        mode = connection.execute(f"PRAGMA journal_mode={journal_mode}").fetchone()[0]
        if mode != journal_mode:
            logger.warning(
                "index: SQLite kept journal mode %s, not %s, in %s; run one process at a time there "
                "(--journal-mode delete), or write to a local disk and copy",
                mode,
                journal_mode,
                out,
            )
        connection.executescript(_SCHEMA)
    except BaseException:
        connection.close()
        raise
    return connection


def _same_experiment(stored: str, experiment: Experiment) -> bool:
    """Whether the stored experiment JSON is ``experiment``; read through
    :func:`experiment_from_dict`, so that an index written before a key was added still matches."""
    try:
        return experiment_from_dict(json.loads(stored)) == experiment
    except (ExperimentError, ValueError):
        return False


def open_index(out: Path, experiment: Experiment, *, force: bool, journal_mode: str) -> sqlite3.Connection:
    """The index of ``out`` for ``experiment``: refused if it holds another experiment's images;
    with ``force``, emptied first (images, scores, settings and the PNG files)."""
    existed = (out / "index.sqlite").is_file()
    connection = _connect(out, journal_mode)
    try:
        stored = dict(connection.execute("SELECT key, value FROM settings").fetchall())
        if force and existed:
            _start_over(connection, out)
            stored = {}
        elif "experiment" in stored and not _same_experiment(stored["experiment"], experiment):
            raise ExperimentError(
                f"out: {str(out)!r} holds another experiment's images; choose another folder, or pass --force to start over"
            )
        if "experiment" not in stored:
            text = json.dumps(experiment.as_dict(), sort_keys=True)
            with connection:
                connection.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('experiment', ?)", (text,))
    except BaseException:
        connection.close()
        raise
    return connection


def _start_over(connection: sqlite3.Connection, out: Path) -> None:
    """Forget the previous run: its rows first, then its files (killed in between, the index
    points at nothing missing)."""
    logger.info("--force: deleting the previous run's images, scores and settings in %s", out)
    with connection:
        for table in ("images", "scores", "settings"):
            connection.execute(f"DELETE FROM {table}")
    shutil.rmtree(out / "images", ignore_errors=True)
    (out / "gallery.html").unlink(missing_ok=True)


def _flat(run: dict) -> dict:
    """The run settings with each library's version a key of its own, for a refusal to name."""
    versions = {f"versions.{name}": version for name, version in run.get("versions", {}).items()}
    return {**{k: v for k, v in run.items() if k != "versions"}, **versions}


def record_or_refuse_run_settings(connection: sqlite3.Connection, out: Path, run: dict) -> None:
    """Record how this run draws (``run``) in an index that does not say yet; in one that does,
    refuse a run that would draw otherwise: an :class:`ExperimentError` naming the first setting
    that differs from the run that drew the index's images (and nothing written)."""
    row = connection.execute("SELECT value FROM settings WHERE key = 'run'").fetchone()
    if row is not None:
        stored, wanted = _flat(json.loads(row[0])), _flat(run)
        changed = [key for key in sorted(set(stored) | set(wanted)) if stored.get(key) != wanted.get(key)]
        if changed:
            key = changed[0]
            raise ExperimentError(
                f"{key}: {str(out)!r} was drawn with {stored.get(key)!r}, this run would use {wanted.get(key)!r}; "
                "rerun as before, or pass --force to start over"
            )
        return
    if connection.execute("SELECT 1 FROM images LIMIT 1").fetchone() is not None:
        logger.warning("index: %s does not say how its first images were drawn; recording this run's settings", out)
    with connection:
        connection.execute(
            "INSERT OR REPLACE INTO settings (key, value) VALUES ('run', ?)", (json.dumps(run, sort_keys=True),)
        )


def done_and_todo(connection: sqlite3.Connection, chunks: list[list[Comparison]], images_per_comparison: int):
    """The comparisons already indexed, and the chunks that lack one."""
    rows = connection.execute("SELECT comparison, COUNT(*) FROM images GROUP BY comparison").fetchall()
    done = {name for name, count in rows if count == images_per_comparison}
    return done, [chunk for chunk in chunks if any(c.name not in done for c in chunk)]


def load(out: str | os.PathLike):
    """The index of a sweep as a pandas DataFrame, one row per image."""
    import pandas as pd

    index = Path(out) / "index.sqlite"
    if not index.is_file():
        raise ValueError(f"out: no sweep index at {str(index)!r}")
    with sqlite3.connect(index) as connection:
        frame = pd.read_sql_query("SELECT * FROM images ORDER BY comparison, image", connection)
    frame["seed"] = frame["seed"].map(int)
    return frame
