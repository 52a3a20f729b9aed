"""How far the committed pictures move on other CPUs, measured on one machine.

``python -m blending.companion.portability --out benchmarks/cpu-levels`` redraws every chapter (``python -m
blending.companion.figures --check`` in a copy of ``notebooks/``) once per CPU capability level, each level
emulated by the libraries' documented switches (:data:`LEVELS`), and records every picture's
largest cell change against its committed fingerprint (:mod:`blending.companion.fingerprint`): with the
pinned numeric paths (:mod:`blending.companion.numerics`) and, with ``--unpinned``, with each CPU's own. A
level that cannot take the pinned paths (no AVX2) runs unpinned in both: it stands in for another
architecture, whose drift only the fingerprints' tolerance can absorb.

It writes ``OUT.json`` (every picture, every level) and ``OUT.md`` (each chapter's largest change
and the picture that made it), which the book's *Status* page includes, after each level: a
measurement is long (every chapter, once per level), so ``--only`` measures some chapters and a
run adds to what ``OUT.json`` already holds, replacing only the chapters it measured again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import numerics
from .fingerprint import REPORT, TOLERANCE

__all__ = ["LEVELS", "measure", "merge", "table"]

logger = logging.getLogger(__name__)

#: For each level, the switches that make this CPU compute like one that offers only that level.
#: ``MKL_ENABLE_INSTRUCTIONS`` caps MKL's dispatch as ``MKL_CBWR`` does, but leaves MKL free to
#: choose its path below the cap, as it does on a CPU of that level.
LEVELS = {
    "this CPU's own": {},
    "AVX-512 without AMX or VNNI": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "AVX2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "AVX2, 1 thread": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "OMP_NUM_THREADS": "1",
    },
    "AVX2, 4 threads": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        "OMP_NUM_THREADS": "4",
    },
    "SSE4.2, no AVX (another architecture's stand-in)": {
        "ATEN_CPU_CAPABILITY": "default",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "MKL_CBWR": "COMPATIBLE",
    },
}
_RECORD_ROUNDING = 0.5e-4 + 1e-9
#: The levels without AVX2, which cannot take the pinned paths.
_UNPINNABLE = {"SSE4.2, no AVX (another architecture's stand-in)"}


def _run_level(level: str, pinning: bool, notebooks: Path, only: list[str] | None = None) -> list[dict]:
    """Every picture's largest change at ``level``, from a check of a copy of ``notebooks`` (of
    the chapters in ``only``, if given)."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "notebooks"
        shutil.copytree(notebooks, copy, ignore=shutil.ignore_patterns("figures", "*.failed.ipynb"))
        report = Path(scratch) / "report.jsonl"
        environment = {k: v for k, v in os.environ.items() if k not in (*numerics.PINNED_ENVIRONMENT, "MKL_CBWR")}
        environment.update(LEVELS[level])
        environment[REPORT] = str(report)
        if not pinning or level in _UNPINNABLE:
            environment[numerics.UNPINNED] = "1"
        command = [sys.executable, "-m", "blending.companion.figures", "--check", "--notebooks", str(copy)]
        if only:
            command += ["--only", *only]
        logger.info("%s, %s: %s", level, "pinned" if pinning else "unpinned", " ".join(command))
        finished = subprocess.run(command, env=environment, capture_output=True, text=True)
        if not report.is_file():
            raise RuntimeError(f"{level}: the check reported no picture:\n{finished.stderr[-2000:]}")
        return [json.loads(line) for line in report.read_text().splitlines()]


def measure(
    notebooks: Path,
    levels: list[str],
    conditions: list[bool],
    only: list[str] | None = None,
    results: dict | None = None,
    write=None,
) -> dict:
    """The measurement: for each condition (pinned or not) and level, every picture's change,
    merged into ``results`` (an earlier measurement on this machine, or none); ``write`` is
    called with the results after each level."""
    results = results or {"levels": {}}
    for pinning in conditions:
        for level in levels:
            pictures = _run_level(level, pinning, notebooks, only)
            results = merge(results, "pinned" if pinning else "unpinned", level, pictures)
            if write is not None:
                write(results)
    return results


def _machine() -> str:
    return f"{platform.machine()}, {numerics.cpu_capability()}, {os.cpu_count()} cores"


def merge(results: dict, condition: str, level: str, pictures: list[dict]) -> dict:
    """``results`` with ``pictures`` measured at ``level`` under ``condition`` (``"pinned"`` or
    ``"unpinned"``): they replace the pictures of their chapters there, and the others stay."""
    measured = {p["fingerprints"] for p in pictures}
    levels = {condition: dict(by_level) for condition, by_level in results.get("levels", {}).items()}
    kept = [p for p in levels.get(condition, {}).get(level, []) if p["fingerprints"] not in measured]
    levels.setdefault(condition, {})[level] = sorted(kept + pictures, key=lambda p: p["fingerprints"])
    today, first = datetime.date.today().isoformat(), results.get("date", "").split(" to ")[0]
    return {
        "date": today if first in ("", today) else f"{first} to {today}",
        "machine": _machine(),
        "tolerance": TOLERANCE,
        "levels": levels,
    }


def table(results: dict) -> str:
    """Markdown: one table per condition, a row per chapter, a column per level; each cell the
    chapter's largest picture change (and which picture), in bold when past the tolerance."""
    sections = [f"Measured {results['date']} on one {results['machine']} CPU; tolerance {results['tolerance']}."]
    # pinned first, and the levels in the order of LEVELS, however the measurements were merged
    for condition in sorted(results["levels"], key=lambda c: c != "pinned"):
        by_level = results["levels"][condition]
        levels = {
            level: by_level[level]
            for level in sorted(by_level, key=lambda name: list(LEVELS).index(name) if name in LEVELS else len(LEVELS))
        }
        chapters = sorted({p["fingerprints"] for pictures in levels.values() for p in pictures})
        lines = [
            f"| {condition} | " + " | ".join(levels) + " |",
            "| --- | " + " | ".join("---:" for _ in levels) + " |",
        ]
        for chapter in chapters:
            cells = []
            for pictures in levels.values():
                own = [p for p in pictures if p["fingerprints"] == chapter]
                if not own:
                    cells.append("not measured")
                    continue
                worst = max(own, key=lambda p: p["change"])
                # fingerprints are recorded to 4 decimals: half a unit of the last one is no change
                text = f"{worst['change']:.4f}" if worst["change"] > _RECORD_ROUNDING else "0"
                if worst["change"] > results["tolerance"]:
                    text = f"**{text}** ({worst['picture']})"
                cells.append(text)
            count = max(sum(p["fingerprints"] == chapter for p in pictures) for pictures in levels.values())
            lines.append(f"| {chapter} ({count} pictures) | " + " | ".join(cells) + " |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m blending.companion.portability", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, required=True, help="OUT.json and OUT.md are written")
    parser.add_argument("--notebooks", type=Path, default=Path("notebooks"))
    parser.add_argument("--levels", nargs="+", choices=list(LEVELS), default=list(LEVELS))
    parser.add_argument("--only", nargs="+", help="chapters (notebook names without .ipynb) to measure")
    parser.add_argument("--unpinned", action="store_true", help="also measure with each CPU's own paths")
    parser.add_argument("--only-unpinned", action="store_true", help="measure only with each CPU's own paths")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    conditions = [False] if args.only_unpinned else [True, False] if args.unpinned else [True]
    json_path, table_path = args.out.with_suffix(".json"), args.out.with_suffix(".md")
    earlier = json.loads(json_path.read_text()) if json_path.is_file() else None
    if earlier is not None and earlier.get("machine") != _machine():
        parser.error(f"--out: {json_path} was measured on {earlier.get('machine')}, not on this {_machine()}")
    json_path.parent.mkdir(parents=True, exist_ok=True)

    def write(results: dict) -> None:
        json_path.write_text(json.dumps(results, indent=1) + "\n")
        table_path.write_text(table(results))

    results = measure(args.notebooks, args.levels, conditions, args.only, earlier, write)
    sys.stdout.write(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
