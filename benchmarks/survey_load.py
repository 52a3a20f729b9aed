"""Load test of the survey server (``blending survey serve``): many participants answering at once.

``python benchmarks/survey_load.py [--participants 50] [--trials 40]`` writes a synthetic study folder
(3 methods, two blocks of ``--trials`` trials each: ``trials - 2`` blend trials and 2 attention trials,
8x8 PNGs) in a temporary folder, starts ``serve`` on it in a new process (uvicorn, one process, as
the command runs it) and lets every participant go through the study at the same time, as a browser
would (``GET /``, ``POST /start``, then ``GET /api/trial`` and ``POST /api/answer`` until done), one
``httpx.AsyncClient`` each on one asyncio loop. It times every ``POST /api/answer`` (sent to
acknowledged: the answer committed with ``synchronous=FULL``) and every ``GET /api/trial``, and checks
afterwards, in ``answers.sqlite`` and in the admin CSV, that every answer was stored exactly once.

Writes ``benchmarks/survey-load.json`` and ``benchmarks/survey-load.md`` (``--out`` for other names)
with the date (``date`` on this machine), the machine (``platform``, CPU count, load average) and the
versions. The client runs on the same machine as the server, so its latencies include the contest for
the cores between them: a ceiling on what a network client would see from a server of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import httpx
from PIL import Image

from blending.testing.survey import served_study

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("switch", "unet", "alternate")
TOKEN = "load-test-token"
WORDS = "lion cat car boat apple clock tree house fish bird lamp chair moon sun cup shoe bell rose kite frog".split()


def _hex(*parts) -> str:
    return hashlib.sha256(" ".join(map(str, parts)).encode()).hexdigest()


def write_study(folder: Path, trials: int, blocks: int = 2) -> dict:
    """A study of ``blocks`` blocks of ``trials`` trials (``trials - 2`` blend, 2 attention) in the design.json format."""
    if trials < 3:
        raise SystemExit("--trials: at least 3")
    images = folder / "images"
    images.mkdir(parents=True)
    count = 0

    def option(trial_id: str, method: str) -> dict:
        nonlocal count
        count += 1
        image = _hex("image", trial_id, method)[:20]
        Image.new("RGB", (8, 8), (count % 256, (count * 7) % 256, (count * 13) % 256)).save(images / f"{image}.png")
        return {"id": _hex("option", trial_id, method)[:12], "image": image, "method": method}

    design_trials, blend = [], [[] for _ in range(blocks)]
    for n in range(blocks * (trials - 2)):
        pair, order = divmod(n, 2)
        a, b = WORDS[pair % len(WORDS)], WORDS[(pair * 7 + 1) % len(WORDS)]
        trial_id = f"t{len(design_trials) + 1:04d}"
        design_trials.append(
            {
                "id": trial_id,
                "kind": "blend",
                "category": "synthetic",
                "pair": pair,
                "order": ("given", "swapped")[order],
                "seed": 21,
                "prompt_1": (a, b)[order],
                "prompt_2": (b, a)[order],
                "options": [option(trial_id, m) for m in METHODS],
            }
        )
        blend[n % blocks].append(trial_id)
    attention = []
    for k in range(2):
        trial_id = f"t{len(design_trials) + 1:04d}"
        options = [option(trial_id, "plain"), option(trial_id, "distractor 1"), option(trial_id, "distractor 2")]
        for other in options[1:]:
            other["method"] = "distractor"
        design_trials.append(
            {
                "id": trial_id,
                "kind": "attention",
                "category": None,
                "pair": None,
                "order": None,
                "seed": 21,
                "prompt_1": WORDS[k],
                "prompt_2": WORDS[k],
                "answer": options[0]["id"],
                "options": options,
            }
        )
        attention.append(trial_id)
    design = {
        "format": "blending-survey/1",
        "source": {"run": "synthetic", "experiment": "load test", "model": "none"},
        "settings": {"methods": list(METHODS), "trials_per_participant": trials, "attention_checks": 2, "seed": 0},
        "trials": design_trials,
        "blocks": [[*ids[: len(ids) // 2], attention[0], *ids[len(ids) // 2 :], attention[1]] for ids in blend],
    }
    (folder / "design.json").write_text(json.dumps(design, indent=2) + "\n")
    return design


async def participant(base: str, index: int, start: asyncio.Event) -> dict:
    """One participant through the whole study: the latencies of their answers and trial requests."""
    answer_ms, trial_ms, statuses = [], [], []
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        await start.wait()
        page = await client.get("/")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        started = await client.post("/start", data={"csrf_token": token})
        if started.status_code != 303:
            raise RuntimeError(f"participant {index}: /start answered {started.status_code}")
        while True:
            t0 = time.perf_counter()
            response = await client.get("/api/trial")
            trial_ms.append((time.perf_counter() - t0) * 1000)
            trial = response.json()
            if trial.get("done"):
                return {"answer_ms": answer_ms, "trial_ms": trial_ms, "statuses": statuses, "code": trial["code"]}
            choice = trial["options"][(index + len(answer_ms)) % len(trial["options"])]["id"]
            body = {"trial": trial["trial"], "choice": choice, "ms": 1000 + index}
            t0 = time.perf_counter()
            response = await client.post("/api/answer", json=body, headers={"X-CSRF-Token": trial["csrf"]})
            answer_ms.append((time.perf_counter() - t0) * 1000)
            statuses.append(response.status_code)


async def run_all(base: str, participants: int) -> tuple[list[dict], float]:
    start = asyncio.Event()
    tasks = [asyncio.create_task(participant(base, i, start)) for i in range(participants)]
    await asyncio.sleep(0.2)  # every client made before any starts
    t0 = time.perf_counter()
    start.set()
    results = await asyncio.gather(*tasks)
    return results, time.perf_counter() - t0


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def _summary(values: list[float]) -> dict:
    return {
        "count": len(values),
        "median_ms": round(statistics.median(values), 2),
        "p95_ms": round(_percentile(values, 95), 2),
        "p99_ms": round(_percentile(values, 99), 2),
        "max_ms": round(max(values), 2),
    }


def check_stored(folder: Path, design: dict, results: list[dict], csv_text: str) -> dict:
    """Every answer stored exactly once: in the database, per participant their block's trials, and in the CSV."""
    with contextlib.closing(sqlite3.connect(folder / "answers.sqlite")) as db:
        rows = db.execute(
            "SELECT p.block, a.participant, a.trial FROM answers AS a JOIN participants AS p USING (participant)"
        ).fetchall()
        (participants,) = db.execute("SELECT COUNT(*) FROM participants").fetchone()
    per = {}
    for block, who, trial in rows:
        per.setdefault((block, who), []).append(trial)
    acknowledged = sum(status == 204 for r in results for status in r["statuses"])
    checks = {
        "every_answer_acknowledged_204": all(status == 204 for r in results for status in r["statuses"]),
        "participants_stored": participants == len(results),
        "rows_equal_acknowledged": len(rows) == acknowledged,
        "no_duplicates": len(rows) == len(set(rows)),
        "each_participant_exactly_their_block": len(per) == len(results)
        and all(sorted(trials) == sorted(design["blocks"][block]) for (block, _), trials in per.items()),
        "csv_rows_equal_acknowledged": len(csv_text.strip().splitlines()) - 1 == acknowledged,
        "distinct_completion_codes": len({r["code"] for r in results}) == len(results),
    }
    checks["stored_exactly_once"] = all(checks.values())
    return checks


def _date() -> str:
    try:
        return subprocess.run(
            ["date", "+%Y-%m-%d %H:%M:%S %Z"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return time.strftime("%Y-%m-%d %H:%M:%S %Z")


def markdown(record: dict) -> str:
    s, m, r = record["settings"], record["machine"], record["results"]
    lines = [
        "# Survey server under load",
        "",
        f"{s['participants']} participants x {s['trials_per_participant']} trials, all at once, against one `blending "
        f"survey serve` process (uvicorn, SQLite in WAL with `synchronous=FULL`), client on the same machine: "
        f"{m['platform']}, {m['cpu_count']} CPUs (load average {m['load_average_before']} before), "
        f"Python {m['python']}; {record['date']}.",
        "",
        "| request | count | median (ms) | 95th percentile (ms) | 99th percentile (ms) | max (ms) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, key in (("POST /api/answer", "answer"), ("GET /api/trial", "trial")):
        x = r[key]
        lines.append(f"| {name} | {x['count']} | {x['median_ms']} | {x['p95_ms']} | {x['p99_ms']} | {x['max_ms']} |")
    lines += [
        "",
        f"{r['answers']} answers in {r['wall_seconds']} s: {r['answers_per_second']} answers per second.",
        "",
        "Checks: " + ", ".join(f"{name} {'yes' if ok else '**NO**'}" for name, ok in record["checks"].items()) + ".",
        "",
    ]
    if record.get("note"):
        lines += [record["note"], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--trials", type=int, default=40, help="trials per participant")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "survey-load", help="writes OUT.json and OUT.md"
    )
    parser.add_argument("--note", default="", help="a sentence for the record (why a reduced size, say)")
    args = parser.parse_args(argv)
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    with tempfile.TemporaryDirectory(prefix="survey-load-") as tmp:
        folder = Path(tmp) / "study"
        design = write_study(folder, args.trials)
        with served_study(folder, Path(tmp) / "server.log", TOKEN) as (base, _):
            results, wall = asyncio.run(run_all(base, args.participants))
            csv_text = httpx.get(
                base + "/admin/answers.csv", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
            ).text
        checks = check_stored(folder, design, results, csv_text)
    answers = [ms for r in results for ms in r["answer_ms"]]
    trials = [ms for r in results for ms in r["trial_ms"]]
    record = {
        "benchmark": "survey server load",
        "date": _date(),
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "load_average_before": load,
            "python": platform.python_version(),
        },
        "versions": {name: version(name) for name in ("starlette", "uvicorn", "httpx")}
        | {"sqlite": sqlite3.sqlite_version},
        "settings": {
            "participants": args.participants,
            "trials_per_participant": args.trials,
            "methods": len(METHODS),
            "client": "one httpx.AsyncClient per participant, one asyncio loop, same machine",
        },
        "results": {
            "answers": len(answers),
            "wall_seconds": round(wall, 3),
            "answers_per_second": round(len(answers) / wall, 1),
            "answer": _summary(answers),
            "trial": _summary(trials),
        },
        "checks": checks,
        "note": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))
    return 0 if checks["stored_exactly_once"] else 1


if __name__ == "__main__":
    sys.exit(main())
