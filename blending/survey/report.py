"""The study's report: which method's blends people pick, how sure we can be, and whether they agree.

``blending survey report STUDY_DIR`` (or ``python -m blending.survey.report STUDY_DIR``) reads the
study's ``design.json`` and its answers in the server's admin CSV format (``GET
/admin/answers.csv``: columns ``participant, trial, pair, order, seed, position_1..position_n,
chosen, ms, time``, where ``position_k`` is what was shown k-th and ``chosen`` what was picked,
each an option id or, as the server writes them, the option's method). It works offline, from
those two files only: the method behind each option, a trial's kind, category and prompts, and an
attention check's right answer all come from the design. :func:`fetch_answers` downloads the CSV
from a running server; :func:`answers_from_sqlite` reads the same rows, with option ids, from the
server's ``answers.sqlite``.

What it computes (:func:`analyse`):

- **Exclusions.** A participant *fails* an attention check when they do not pick its right
  answer (the prompt's plain image). A participant who fails **more than half** of the attention
  checks they answered is excluded, with all of their answers (one check seen and failed: more
  than half, excluded; one of two failed: kept). Participants who answered no check are kept
  and counted. When a participant answered the same trial twice, the first answer (the CSV's
  order) counts.
- **Win shares.** On ``blend`` trials every method of the study is shown once; a method's *win
  share* is the share of answers that pick it (chance: one over the number of methods shown).
  Overall, per category of pair and per prompt order (``given`` / ``swapped``).
- **Intervals.** 95% percentile intervals from a two-way cluster ("pigeonhole") bootstrap (Owen
  2007, *The pigeonhole bootstrap*, Ann. Appl. Stat.): answers are clustered in participants
  *and* in pairs of prompts, crossed, so each replicate draws participants with replacement and
  pairs with replacement (within each category, whose pair counts the design fixes) and weighs
  each answer by the product of its participant's and its pair's draw counts. The same
  replicates give every table's interval, the Bradley-Terry intervals and how often each method
  ranks first.
- **Bradley-Terry strengths** (:mod:`choix`): an answer is a win of the chosen method over every
  other method shown; the strengths are fitted by iterative Luce spectral ranking with a small
  regularisation ``alpha`` (:func:`choix.ilsr_pairwise_dense` on the matrix of weighted win
  counts, which is :func:`choix.ilsr_pairwise` on the list of wins, aggregated), reported as
  log-strengths centred at 0.
- **Agreement** between participants: Krippendorff's alpha, nominal (:mod:`krippendorff`), with
  the blend trials as units, the participants as coders and the chosen method as the value: 1
  when everyone who saw a trial picks the same method, about 0 when picks are as if at random.
- **Position on screen**: the share of picks at each display position (a check of the design's
  balancing and of participants who always click the first image).

:func:`report` writes ``OUT/report.md`` (Markdown tables and PNG figures), ``OUT/summary.json``
(the numbers, the ranking by win share among them) and ``OUT/answers-tidy.csv`` (one row per
answer kept after the exclusions, with the columns the tables come from). Given the readers'
ranking of a toy-world study (:func:`blending.survey.simulate.readers_ranking`), it also compares
the participants' ranking with that truth.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..toy.agreement import spearman

__all__ = [
    "ANSWER_COLUMNS",
    "TIDY_COLUMNS",
    "Analysis",
    "add_arguments",
    "analyse",
    "answers_from_sqlite",
    "excluded",
    "fetch_answers",
    "main",
    "read_answers",
    "report",
    "run",
]

#: The admin CSV's fixed columns; ``position_1``, ``position_2``, ... come between ``seed`` and ``chosen``.
ANSWER_COLUMNS = ("participant", "trial", "pair", "order", "seed", "chosen", "ms", "time")
#: ``answers-tidy.csv``'s columns: one row per kept answer, blend and attention trials alike.
TIDY_COLUMNS = (
    "participant",
    "trial",
    "kind",
    "category",
    "pair",
    "order",
    "seed",
    "ratio",
    "prompt_1",
    "prompt_2",
    "shown",
    "chosen",
    "method",
    "position",
    "correct",
    "ms",
    "time",
)
LEVEL = 0.95
#: Bradley-Terry's regularisation: small against the counts of a study, it keeps a method that
#: never wins at a finite strength.
BT_ALPHA = 0.01
BOOTSTRAP_NOTE = (
    "Intervals are 95% percentile intervals from a two-way cluster (pigeonhole) bootstrap: each of "
    "{resamples} replicates draws participants with replacement and pairs of prompts with replacement "
    "(within each category) and weighs every answer by the product of its participant's and its pair's "
    "draw counts, so that both sources of dependence between answers show in the intervals. Noise that "
    "is particular to single answers is seen by both resamplings, so when answers vary independently of "
    "who gave them and of which pair they are about, the intervals are conservative (up to about twice "
    "as wide as needed; Owen 2007). They under-cover when there are few pairs (or few participants): with G pairs the bootstrap sees only "
    "about (G-1)/G of the between-pair variance and only the G pairs drawn, so intervals from a "
    "category of a handful of pairs are too narrow and should be read as optimistic; they say nothing "
    "of pairs, seeds or people unlike those in the study."
)


# --- reading -------------------------------------------------------------------------------------


def _load_design(design: str | os.PathLike | Mapping) -> dict:
    if isinstance(design, Mapping):
        return dict(design)
    path = Path(design)
    if path.is_dir():
        path = path / "design.json"
    return json.loads(path.read_text())


def read_answers(answers: str | os.PathLike | Iterable[Mapping]) -> list[dict]:
    """The rows of an admin CSV (a path), or the rows given, as dicts with ``positions`` (the
    option ids in display order, empty when the CSV has no ``position_k`` columns)."""
    if isinstance(answers, (str, os.PathLike)):
        with open(answers, newline="", encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
    else:
        rows = [dict(row) for row in answers]
    parsed = []
    for number, row in enumerate(rows, start=2):  # the CSV's line, after its header
        missing = [c for c in ("participant", "trial", "chosen") if not row.get(c)]
        if missing:
            raise ValueError(f"answers, row {number}: no {', '.join(missing)}")
        positions = sorted((int(k.split("_", 1)[1]), v) for k, v in row.items() if k.startswith("position_"))
        parsed.append(
            {
                "participant": str(row["participant"]),
                "trial": str(row["trial"]),
                "chosen": str(row["chosen"]),
                "positions": [str(v) for _, v in positions if v not in (None, "")],
                "ms": _number(row.get("ms")),
                "time": row.get("time") or "",
                "row": number,
            }
        )
    return parsed


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def answers_from_sqlite(study_dir: str | os.PathLike) -> list[dict]:
    """The answers straight from the server's ``STUDY_DIR/answers.sqlite`` (opened read-only), as
    admin-CSV rows with option ids (exact, where the CSV has methods)."""
    import sqlite3

    path = Path(study_dir) / "answers.sqlite"
    if not path.exists():
        raise FileNotFoundError(f"no answers at {path}")
    connection = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        found = connection.execute(
            "SELECT participant, trial, choice, ms, time, shown FROM answers ORDER BY time, rowid"
        ).fetchall()
    finally:
        connection.close()
    rows = []
    for participant, trial, choice, ms, time, shown in found:
        row = {"participant": participant, "trial": trial, "chosen": choice, "ms": ms, "time": time}
        row.update({f"position_{k + 1}": option for k, option in enumerate(json.loads(shown))})
        rows.append(row)
    return rows


def fetch_answers(base_url: str, token: str, path: str | os.PathLike, *, timeout: float = 60.0, transport=None) -> Path:
    """Download ``GET /admin/answers.csv`` from a running server into ``path`` (``transport``:
    an ``httpx`` transport in place of the network)."""
    import httpx

    with httpx.Client(base_url=base_url, transport=transport, timeout=timeout) as client:
        response = client.get("/admin/answers.csv", headers={"Authorization": f"Bearer {token}"})
    response.raise_for_status()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(response.content)
    return path


# --- analysis ------------------------------------------------------------------------------------


def excluded(checks_seen: int, checks_failed: int) -> bool:
    """The exclusion rule: more than half of one's attention checks failed (one of one fails)."""
    return checks_failed > checks_seen / 2


@dataclass
class Analysis:
    """Everything :func:`report` writes; :meth:`summary` is ``summary.json``."""

    design: dict
    methods: list[str]
    tidy: list[dict]
    participants: dict
    answers: dict
    win_shares: dict
    bradley_terry: dict
    agreement: dict
    positions: dict
    times: dict
    settings: dict
    truth: dict | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ranking(self) -> list[str]:
        """The methods by overall win share, highest first."""
        shares = self.win_shares["overall"]
        return sorted(self.methods, key=lambda m: (-_or(shares[m]["share"], -1), self.methods.index(m)))

    @property
    def bt_ranking(self) -> list[str]:
        strengths = self.bradley_terry.get("strengths", {})
        return sorted(
            self.methods, key=lambda m: (-_or(strengths.get(m, {}).get("log_strength"), -1e9), self.methods.index(m))
        )

    def summary(self) -> dict:
        return _jsonable(
            {
                "format": "blending-survey-report/1",
                "source": self.design.get("source", {}),
                "settings": self.settings,
                "methods": self.methods,
                "participants": self.participants,
                "answers": self.answers,
                "ranking": self.ranking,
                "win_shares": self.win_shares,
                "bradley_terry": {**self.bradley_terry, "ranking": self.bt_ranking},
                "agreement": self.agreement,
                "positions": self.positions,
                "times": self.times,
                "truth": self.truth,
                "notes": self.notes,
            }
        )


def _or(value, default):
    return default if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def analyse(
    answers: str | os.PathLike | Iterable[Mapping],
    design: str | os.PathLike | Mapping,
    *,
    resamples: int = 2000,
    seed: int = 0,
    truth: Mapping | None = None,
) -> Analysis:
    """Exclusions, win shares, Bradley-Terry strengths and agreement of one study's answers.

    ``answers``: the admin CSV (a path) or its rows; ``design``: ``design.json`` (a path, the
    study folder, or the parsed dict); ``truth``: :func:`blending.survey.simulate.readers_ranking`'s
    result, to compare with. ``resamples`` bootstrap replicates drawn from ``seed``.
    """
    design = _load_design(design)
    methods = list(design["settings"]["methods"])
    trials = {t["id"]: t for t in design["trials"]}
    rows = read_answers(answers)

    # one answer per participant and trial: the first
    seen: set[tuple[str, str]] = set()
    duplicates = 0
    unique = []
    for row in rows:
        trial = trials.get(row["trial"])
        if trial is None:
            raise ValueError(f"answers, row {row['row']}: trial {row['trial']!r} is not in the design")
        row.update(_resolve(row, trial))
        key = (row["participant"], row["trial"])
        if key in seen:
            duplicates += 1
            continue
        seen.add(key)
        unique.append(row)

    # attention checks and the exclusion rule
    checks: dict[str, list[int]] = {}
    order_of_participants: list[str] = []
    for row in unique:
        if row["participant"] not in checks:
            checks[row["participant"]] = [0, 0]
            order_of_participants.append(row["participant"])
        trial = trials[row["trial"]]
        if trial["kind"] == "attention":
            checks[row["participant"]][0] += 1
            checks[row["participant"]][1] += not row["correct"]
    out = sorted(p for p, (n, failed) in checks.items() if excluded(n, failed))
    participants = {
        "answered": len(checks),
        "excluded": len(out),
        "kept": len(checks) - len(out),
        "without_checks": sum(1 for n, _ in checks.values() if n == 0),
        "excluded_ids": out,
        "checks_seen": int(sum(n for n, _ in checks.values())),
        "checks_failed": int(sum(f for _, f in checks.values())),
        "failures": _count_table(checks),
        "rule": "excluded when more than half of the attention checks answered are failed (a failed check: "
        "not picking the prompt's plain image); participants without checks are kept",
    }
    kept_ids = set(checks) - set(out)

    tidy = []
    for row in unique:
        if row["participant"] not in kept_ids:
            continue
        trial = trials[row["trial"]]
        tidy.append(
            {
                "participant": row["participant"],
                "trial": row["trial"],
                "kind": trial["kind"],
                "category": trial.get("category"),
                "pair": trial.get("pair"),
                "order": trial.get("order"),
                "seed": trial.get("seed"),
                "ratio": trial.get("ratio"),
                "prompt_1": trial["prompt_1"],
                "prompt_2": trial["prompt_2"],
                "shown": len(row["positions"]) or len(trial["options"]),
                "chosen": row["option"],
                "method": row["method"],
                "position": row["position"],
                "correct": row["correct"] if trial["kind"] == "attention" else None,
                "ms": int(row["ms"]) if float(row["ms"]).is_integer() else row["ms"],
                "time": row["time"],
            }
        )
    blends = [r for r in tidy if r["kind"] == "blend"]
    answers_summary = {
        "rows": len(rows),
        "duplicates": duplicates,
        "kept": len(tidy),
        "kept_blend": len(blends),
        "kept_attention": len(tidy) - len(blends),
        "dropped_with_excluded": len(unique) - len(tidy),
        "complete_participants": _complete(unique, design, kept_ids),
    }

    win_shares, bradley_terry, notes = _shares_and_strengths(blends, trials, methods, resamples, seed)
    analysis = Analysis(
        design=design,
        methods=methods,
        tidy=tidy,
        participants=participants,
        answers=answers_summary,
        win_shares=win_shares,
        bradley_terry=bradley_terry,
        agreement=_agreement(blends, methods),
        positions=_positions(blends),
        times=_times(tidy),
        settings={"resamples": resamples, "seed": seed, "level": LEVEL, "bt_alpha": BT_ALPHA},
        notes=notes,
    )
    if truth is not None:
        analysis.truth = _compare_truth(analysis, truth)
    return analysis


def _resolve(row: Mapping, trial: Mapping) -> dict:
    """The chosen option (its id, or None when the CSV names only a method that several options
    share), its method, whether it is an attention check's answer, and its display position.

    ``chosen`` and ``position_k`` may be option ids (exact) or methods (the server's admin CSV):
    a blend trial's methods are unique, so either identifies the option.
    """
    options = trial["options"]
    by_id = {o["id"]: o for o in options}
    chosen = row["chosen"]
    if chosen in by_id:
        option, method = chosen, by_id[chosen]["method"]
    elif any(o["method"] == chosen for o in options):
        same = [o["id"] for o in options if o["method"] == chosen]
        option, method = (same[0] if len(same) == 1 else None), chosen
    else:
        raise ValueError(
            f"answers, row {row['row']}: {chosen!r} is neither an option nor a method of trial {trial['id']}"
        )
    correct = None
    if trial["kind"] == "attention":
        correct = option == trial["answer"] if option is not None else method == by_id[trial["answer"]]["method"]
    positions = row["positions"]
    position = positions.index(chosen) + 1 if positions.count(chosen) == 1 else None
    return {"option": option, "method": method, "correct": correct, "position": position}


def _count_table(checks: Mapping[str, list[int]]) -> list[dict]:
    """How many participants saw n checks and failed f, for each (n, f) seen."""
    counts: dict[tuple[int, int], int] = {}
    for n, failed in checks.values():
        counts[(n, failed)] = counts.get((n, failed), 0) + 1
    return [
        {"checks": n, "failed": f, "participants": c, "excluded": excluded(n, f)}
        for (n, f), c in sorted(counts.items())
    ]


def _complete(unique: list[dict], design: dict, kept: set[str]) -> int:
    """Kept participants who answered as many trials as a block holds."""
    sizes = {len(b) for b in design.get("blocks", [])}
    answered: dict[str, int] = {}
    for row in unique:
        answered[row["participant"]] = answered.get(row["participant"], 0) + 1
    return sum(1 for p in kept if answered.get(p, 0) in sizes)


def _groups(blends: list[dict]) -> dict[str, dict[str, np.ndarray]]:
    """Index arrays of the answers of each table: overall, per category, per order and, when the
    design has several ratios, per ratio."""
    groups: dict[str, dict[str, np.ndarray]] = {"overall": {"all": np.arange(len(blends))}, "category": {}, "order": {}}
    if len({r["ratio"] for r in blends}) > 1:
        groups["ratio"] = {}
    for kind in [k for k in groups if k != "overall"]:
        values = sorted({str(r[kind]) for r in blends}, key=_natural)
        for value in values:
            groups[kind][value] = np.array([i for i, r in enumerate(blends) if str(r[kind]) == value], dtype=int)
    return groups


def _natural(value: str) -> tuple:
    """Numbers (ratios) by value, before words (categories, orders) in alphabetical order."""
    number = _number(value)
    return (1, 0.0, value) if math.isnan(number) else (0, number, value)


def _bt(comparisons: np.ndarray) -> np.ndarray:
    """Centred Bradley-Terry log-strengths from a k x k matrix of (weighted) win counts."""
    import choix

    try:
        params = choix.ilsr_pairwise_dense(comparisons, alpha=BT_ALPHA, max_iter=1000)
    except RuntimeError:  # did not converge
        return np.full(len(comparisons), np.nan)
    return params - params.mean()


def _shares_and_strengths(blends, trials, methods, resamples, seed):
    k = len(methods)
    index = {m: i for i, m in enumerate(methods)}
    notes = []
    empty_share = {m: {"wins": 0, "answers": 0, "share": math.nan, "low": math.nan, "high": math.nan} for m in methods}
    if not blends:
        notes.append("No blend answers were kept: nothing to estimate.")
        overall = {m: {**v, "p_first": math.nan} for m, v in empty_share.items()}
        return {"overall": overall, "by_category": {}, "by_order": {}, "chance": math.nan}, {"strengths": {}}, notes

    chosen = np.array([index[r["method"]] for r in blends])
    shown = np.zeros((len(blends), k))
    for i, r in enumerate(blends):
        for option in trials[r["trial"]]["options"]:
            if option["method"] in index:
                shown[i, index[option["method"]]] = 1
    won = np.zeros((len(blends), k))
    won[np.arange(len(blends)), chosen] = 1

    participants = sorted({r["participant"] for r in blends})
    a_participant = np.array([participants.index(r["participant"]) for r in blends])
    pairs = sorted({(str(r["category"]), r["pair"]) for r in blends}, key=str)
    a_pair = np.array([pairs.index((str(r["category"]), r["pair"])) for r in blends])
    strata = [np.array([j for j, p in enumerate(pairs) if p[0] == c]) for c in sorted({p[0] for p in pairs})]
    groups = _groups(blends)

    def shares(weights: np.ndarray, idx: np.ndarray) -> np.ndarray:
        total = weights[idx].sum()
        if total <= 0:
            return np.full(k, np.nan)
        return np.bincount(chosen[idx], weights=weights[idx], minlength=k) / total

    def comparisons(weights: np.ndarray) -> np.ndarray:
        matrix = (won * weights[:, None]).T @ shown
        np.fill_diagonal(matrix, 0)
        return matrix

    ones = np.ones(len(blends))
    point = {(kind, name): shares(ones, idx) for kind, members in groups.items() for name, idx in members.items()}
    bt_point = _bt(comparisons(ones))

    rng = np.random.default_rng(seed)
    drawn = {key: np.empty((resamples, k)) for key in point}
    bt_drawn = np.empty((resamples, k))
    for b in range(resamples):
        w_participant = np.bincount(
            rng.integers(len(participants), size=len(participants)), minlength=len(participants)
        )
        w_pair = np.zeros(len(pairs))
        for stratum in strata:
            w_pair[stratum] = np.bincount(rng.integers(len(stratum), size=len(stratum)), minlength=len(stratum))
        weights = w_participant[a_participant] * w_pair[a_pair]
        for key, values in drawn.items():
            values[b] = shares(weights, groups[key[0]][key[1]])
        bt_drawn[b] = _bt(comparisons(weights)) if weights.sum() > 0 else np.nan

    def table(key) -> dict:
        idx = groups[key[0]][key[1]]
        wins = np.bincount(chosen[idx], minlength=k)
        low, high = _interval(drawn[key])
        return {
            m: {
                "wins": int(wins[i]),
                "answers": int(len(idx)),
                "share": float(point[key][i]),
                "low": float(low[i]),
                "high": float(high[i]),
            }
            for i, m in enumerate(methods)
        }

    overall = table(("overall", "all"))
    # how often each method has the highest share (ties split)
    values = drawn[("overall", "all")]
    best = np.nan_to_num(values, nan=-1) == np.nan_to_num(values, nan=-1).max(axis=1, keepdims=True)
    first = (best / best.sum(axis=1, keepdims=True)).mean(axis=0)
    for i, m in enumerate(methods):
        overall[m]["p_first"] = float(first[i])
    chance = float(np.mean(1 / shown.sum(axis=1)))
    win_shares = {
        "overall": overall,
        "by_category": {name: table(("category", name)) for name in groups["category"]},
        "by_order": {name: table(("order", name)) for name in groups["order"]},
        **({"by_ratio": {name: table(("ratio", name)) for name in groups["ratio"]}} if "ratio" in groups else {}),
        "chance": chance,
        "clusters": {"participants": len(participants), "pairs": len(pairs), "pairs_by_category": _pair_counts(pairs)},
    }
    low, high = _interval(bt_drawn)
    bradley_terry = {
        "alpha": BT_ALPHA,
        "comparisons": int(comparisons(ones).sum()),
        "strengths": {
            m: {"log_strength": float(bt_point[i]), "low": float(low[i]), "high": float(high[i])}
            for i, m in enumerate(methods)
        },
    }
    small = [c for c, n in _pair_counts(pairs).items() if n < 10]
    if small:
        notes.append(
            f"Categories with fewer than 10 pairs ({', '.join(small)}): their intervals rest on a handful "
            "of clusters and under-cover."
        )
    single = [c for c, n in _pair_counts(pairs).items() if n == 1]
    if single:
        notes.append(
            f"Categories of a single pair ({', '.join(single)}): resampling one pair cannot vary it, so their "
            "intervals show the participants' variation only."
        )
    return win_shares, bradley_terry, notes


def _pair_counts(pairs) -> dict[str, int]:
    counts: dict[str, int] = {}
    for category, _ in pairs:
        counts[category] = counts.get(category, 0) + 1
    return counts


def _interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tail = (1 - LEVEL) / 2
    with np.errstate(invalid="ignore"):
        if np.isnan(values).all():
            return np.full(values.shape[1], np.nan), np.full(values.shape[1], np.nan)
        low, high = np.nanquantile(values, [tail, 1 - tail], axis=0)
    return low, high


def _agreement(blends: list[dict], methods: list[str]) -> dict:
    """Krippendorff's alpha (nominal): units the blend trials, coders the participants."""
    import krippendorff

    participants = sorted({r["participant"] for r in blends})
    units = sorted({r["trial"] for r in blends})
    data = np.full((len(participants), len(units)), np.nan)
    for r in blends:
        data[participants.index(r["participant"]), units.index(r["trial"])] = methods.index(r["method"])
    coded = (~np.isnan(data)).sum(axis=0)
    pairable = coded >= 2
    result = {
        "alpha": math.nan,
        "units": len(units),
        "units_pairable": int(pairable.sum()),
        "coders": len(participants),
        "values_pairable": int(coded[pairable].sum()),
        "mean_coders_per_unit": float(coded[pairable].mean()) if pairable.any() else 0.0,
    }
    if pairable.any():
        # one value only (everyone always picks one method): agreement is undefined, NaN
        try:
            with np.errstate(invalid="ignore", divide="ignore"):
                result["alpha"] = float(
                    krippendorff.alpha(
                        reliability_data=data[:, pairable],
                        value_domain=list(range(len(methods))),
                        level_of_measurement="nominal",
                    )
                )
        except (ValueError, ZeroDivisionError):
            pass
    return result


def _positions(blends: list[dict]) -> dict:
    """The share of picks at each display position, among answers with a known position."""
    known = [r for r in blends if r["position"] is not None]
    if not known:
        return {"answers": 0, "shares": {}}
    size = max(r["shown"] for r in known)
    counts = np.bincount([r["position"] - 1 for r in known], minlength=size)
    return {
        "answers": len(known),
        "shares": {str(i + 1): float(c / len(known)) for i, c in enumerate(counts)},
        "chance": float(np.mean([1 / r["shown"] for r in known])),
    }


def _times(tidy: list[dict]) -> dict:
    times = {}
    for kind in ("blend", "attention"):
        values = np.array([r["ms"] for r in tidy if r["kind"] == kind], dtype=float)
        values = values[~np.isnan(values)]
        times[kind] = {
            "answers": len(values),
            "median_ms": float(np.median(values)) if len(values) else math.nan,
            "q25_ms": float(np.quantile(values, 0.25)) if len(values) else math.nan,
            "q75_ms": float(np.quantile(values, 0.75)) if len(values) else math.nan,
        }
    return times


def _compare_truth(analysis: Analysis, truth: Mapping) -> dict:
    """The participants' win shares against the readers' (``truth["shares"]``)."""
    truth_shares = {m: float(truth["shares"][m]) for m in analysis.methods if m in truth.get("shares", {})}
    methods = [m for m in analysis.methods if m in truth_shares]
    people = [analysis.win_shares["overall"][m]["share"] for m in methods]
    readers = [truth_shares[m] for m in methods]
    truth_ranking = list(truth.get("ranking") or sorted(methods, key=lambda m: -truth_shares[m]))
    return {
        "readers_shares": truth_shares,
        "readers_ranking": truth_ranking,
        "readers_trials": truth.get("trials"),
        "spearman": spearman(people, readers) if len(methods) >= 2 else math.nan,
        "same_first": bool(methods) and analysis.ranking[0] == truth_ranking[0],
    }


# --- writing -------------------------------------------------------------------------------------


def _percent(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _share_cell(entry: Mapping) -> str:
    return f"{_percent(entry['share'])}% [{_percent(entry['low'])}, {_percent(entry['high'])}]"


def _pairs(n: int) -> str:
    return f"{n} pair" if n == 1 else f"{n} pairs"


def _markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _share_figure(analysis: Analysis, path: Path) -> None:
    from matplotlib.figure import Figure

    methods = analysis.ranking
    overall = analysis.win_shares["overall"]
    categories = list(analysis.win_shares["by_category"])
    columns = 1 + len(categories)
    figure = Figure(figsize=(3.2 * columns, 0.45 * len(methods) + 1.4), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, columns, sharex=True, sharey=True))
    panels = [("all", overall)] + [(c, analysis.win_shares["by_category"][c]) for c in categories]
    y = np.arange(len(methods))[::-1]
    for ax, (title, table) in zip(axes, panels):
        share = np.array([_or(table[m]["share"], np.nan) for m in methods])
        low = np.array([_or(table[m]["low"], np.nan) for m in methods])
        high = np.array([_or(table[m]["high"], np.nan) for m in methods])
        error = np.nan_to_num(np.vstack([share - low, high - share]), nan=0.0).clip(min=0)
        ax.errorbar(share, y, xerr=error, fmt="o", color="#1f77b4", capsize=3)
        ax.axvline(analysis.win_shares["chance"], color="#7f7f7f", linestyle="--", linewidth=1, label="chance")
        n = next(iter(table.values()))["answers"] if table else 0
        ax.set_title(f"{title} ({n} answers)", fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_xlabel("win share")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y, methods)
    axes[-1].legend(loc="lower right", fontsize=8, frameon=False)
    figure.savefig(path, format="png", dpi=100)


def _strength_figure(analysis: Analysis, path: Path) -> None:
    from matplotlib.figure import Figure

    strengths = analysis.bradley_terry["strengths"]
    methods = analysis.bt_ranking
    y = np.arange(len(methods))[::-1]
    value = np.array([_or(strengths[m]["log_strength"], np.nan) for m in methods])
    low = np.array([_or(strengths[m]["low"], np.nan) for m in methods])
    high = np.array([_or(strengths[m]["high"], np.nan) for m in methods])
    figure = Figure(figsize=(4.5, 0.45 * len(methods) + 1.2), layout="constrained")
    ax = figure.subplots()
    error = np.nan_to_num(np.vstack([value - low, high - value]), nan=0.0).clip(min=0)
    ax.errorbar(value, y, xerr=error, fmt="o", color="#d62728", capsize=3)
    ax.axvline(0, color="#7f7f7f", linestyle="--", linewidth=1)
    ax.set_yticks(y, methods)
    ax.set_xlabel("Bradley-Terry log-strength (centred)")
    ax.grid(axis="x", alpha=0.3)
    figure.savefig(path, format="png", dpi=100)


def _markdown(analysis: Analysis, figures: Mapping[str, str]) -> str:
    source = analysis.design.get("source", {})
    p, a = analysis.participants, analysis.answers
    shares = analysis.win_shares
    lines = [
        "# Blind user study: which blend do people pick?",
        "",
        f"Study of {source.get('experiment', '?')} on {source.get('model', '?')} (sweep `{source.get('run', '?')}`); "
        f"methods: {', '.join(analysis.methods)}.",
        "",
        f"{p['answered']} participants answered; {p['excluded']} were excluded by the attention checks, "
        f"{p['kept']} kept ({a['complete_participants']} of them completed a whole block). "
        f"{a['kept_blend']} blend answers and {a['kept_attention']} attention answers are analysed"
        + (f"; {a['duplicates']} repeated answers were dropped" if a["duplicates"] else "")
        + ".",
        "",
        "## Attention checks and exclusions",
        "",
        f"Rule: a participant fails a check when they do not pick the prompt's plain image; a participant "
        f"who fails more than half of the checks they answered is excluded (one check failed out of one: "
        f"excluded; one of two: kept). {p['without_checks']} participants answered no check and are kept. "
        f"{p['checks_failed']} of {p['checks_seen']} checks were failed.",
        "",
        _markdown_table(
            ["checks answered", "failed", "participants", "excluded"],
            [[r["checks"], r["failed"], r["participants"], "yes" if r["excluded"] else "no"] for r in p["failures"]],
        ),
        "",
    ]
    if not a["kept_blend"]:
        lines += ["No blend answers were kept: nothing more to report.", ""]
        return "\n".join(lines)

    overall = shares["overall"]
    clusters = shares["clusters"]
    lines += [
        "## Win shares",
        "",
        f"A method's win share is the share of blend answers that pick its blend; chance is "
        f"{_percent(shares['chance'])}%. {clusters['participants']} participants and {clusters['pairs']} pairs "
        "of prompts are the bootstrap's clusters. *First*: the share of bootstrap replicates in which the "
        "method has the highest win share.",
        "",
        _markdown_table(
            ["rank", "method", "wins", "answers", "win share [95% interval]", "first"],
            [
                [
                    i + 1,
                    m,
                    overall[m]["wins"],
                    overall[m]["answers"],
                    _share_cell(overall[m]),
                    _percent(overall[m]["p_first"]) + "%",
                ]
                for i, m in enumerate(analysis.ranking)
            ],
        ),
        "",
        f"![Win shares with 95% intervals, overall and per category]({figures['shares']})",
        "",
        "### By category",
        "",
        _markdown_table(
            ["method", *(f"{c} ({_pairs(clusters['pairs_by_category'].get(c, 0))})" for c in shares["by_category"])],
            [[m, *(_share_cell(t[m]) for t in shares["by_category"].values())] for m in analysis.ranking],
        ),
        "",
        "### By prompt order",
        "",
        "`given`: the prompts in the experiment file's order; `swapped`: the other way round.",
        "",
        _markdown_table(
            ["method", *shares["by_order"]],
            [[m, *(_share_cell(t[m]) for t in shares["by_order"].values())] for m in analysis.ranking],
        ),
        "",
    ]
    if "by_ratio" in shares:
        lines += [
            "### By ratio",
            "",
            _markdown_table(
                ["method", *(f"ratio {r}" for r in shares["by_ratio"])],
                [[m, *(_share_cell(t[m]) for t in shares["by_ratio"].values())] for m in analysis.ranking],
            ),
            "",
        ]
    lines += [
        "## Bradley-Terry strengths",
        "",
        f"Each answer counts as a win of the chosen method over every other method shown "
        f"({analysis.bradley_terry['comparisons']} comparisons); log-strengths are centred at 0 and fitted by "
        f"iterative Luce spectral ranking (choix) with regularisation alpha = {analysis.bradley_terry['alpha']}. "
        "A difference d in log-strength means odds of exp(d) to 1 in a head-to-head choice.",
        "",
        _markdown_table(
            ["rank", "method", "log-strength [95% interval]"],
            [
                [
                    i + 1,
                    m,
                    f"{_or(s['log_strength'], math.nan):+.2f} [{_or(s['low'], math.nan):+.2f}, {_or(s['high'], math.nan):+.2f}]",
                ]
                for i, (m, s) in enumerate((m, analysis.bradley_terry["strengths"][m]) for m in analysis.bt_ranking)
            ],
        ),
        "",
        f"![Bradley-Terry log-strengths with 95% intervals]({figures['strengths']})",
        "",
        "## Agreement between participants",
        "",
    ]
    agreement = analysis.agreement
    alpha = agreement["alpha"]
    lines += [
        f"Krippendorff's alpha (nominal; units: blend trials, coders: participants, values: the chosen method) = "
        f"{'undefined' if math.isnan(alpha) else f'{alpha:.3f}'}, over {agreement['units_pairable']} trials "
        f"seen by at least two participants (on average {agreement['mean_coders_per_unit']:.1f}). 1: everyone "
        "who saw a trial picked the same method; 0: picks agree no more than chance would have them.",
        "",
    ]
    positions = analysis.positions
    if positions["answers"]:
        lines += [
            "## Position on screen",
            "",
            f"Share of picks at each display position (chance {_percent(positions['chance'])}%):",
            "",
            _markdown_table(
                ["position", *positions["shares"]],
                [["picked", *(f"{_percent(v)}%" for v in positions["shares"].values())]],
            ),
            "",
        ]
    times = analysis.times
    lines += [
        "## Response times",
        "",
        _markdown_table(
            ["trials", "answers", "median (s)", "quartiles (s)"],
            [
                [
                    kind,
                    t["answers"],
                    f"{_or(t['median_ms'], math.nan) / 1000:.1f}",
                    f"{_or(t['q25_ms'], math.nan) / 1000:.1f}–{_or(t['q75_ms'], math.nan) / 1000:.1f}",
                ]
                for kind, t in times.items()
            ],
        ),
        "",
    ]
    if analysis.truth:
        truth = analysis.truth
        lines += [
            "## Against the attribute readers",
            "",
            f"The readers' pick on each of {truth['readers_trials']} blend trials (the option whose read "
            "attributes cover most of both prompts) gives each method a share of trials; Spearman's rank "
            f"correlation with the participants' win shares: {_or(truth['spearman'], math.nan):.2f}; "
            f"the same method first: {'yes' if truth['same_first'] else 'no'}.",
            "",
            _markdown_table(
                ["method", "participants' win share", "readers' share"],
                [
                    [m, _share_cell(overall[m]), f"{_percent(truth['readers_shares'].get(m, math.nan))}%"]
                    for m in analysis.ranking
                ],
            ),
            "",
        ]
    lines += ["## How the intervals are made", "", BOOTSTRAP_NOTE.format(resamples=analysis.settings["resamples"]), ""]
    lines += [f"- {note}" for note in analysis.notes]
    return "\n".join(lines).rstrip() + "\n"


def _write_tidy(tidy: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=TIDY_COLUMNS)
        writer.writeheader()
        for row in tidy:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in TIDY_COLUMNS})


def report(
    answers_csv: str | os.PathLike | Iterable[Mapping],
    design_json: str | os.PathLike | Mapping,
    out_dir: str | os.PathLike,
    *,
    resamples: int = 2000,
    seed: int = 0,
    truth: Mapping | None = None,
) -> dict:
    """Analyse and write ``out_dir/report.md``, its figures, ``summary.json`` and
    ``answers-tidy.csv``; returns the summary."""
    analysis = analyse(answers_csv, design_json, resamples=resamples, seed=seed, truth=truth)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {"shares": "win-shares.png", "strengths": "strengths.png"}
    if analysis.answers["kept_blend"]:
        _share_figure(analysis, out / figures["shares"])
        _strength_figure(analysis, out / figures["strengths"])
    (out / "report.md").write_text(_markdown(analysis, figures), encoding="utf-8")
    _write_tidy(analysis.tidy, out / "answers-tidy.csv")
    summary = analysis.summary()
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return summary


# --- command line --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", type=Path, help="the study folder (design.json)")
    parser.add_argument(
        "--answers",
        type=Path,
        default=None,
        help="the answers in the admin CSV format (default: fetched with --url, else STUDY/answers.sqlite)",
    )
    parser.add_argument("--url", default=None, help="a running server to fetch /admin/answers.csv from")
    parser.add_argument(
        "--token",
        default=os.environ.get("BLENDING_SURVEY_TOKEN"),
        help="the admin token for --url (default: $BLENDING_SURVEY_TOKEN)",
    )
    parser.add_argument("--out", type=Path, default=None, help="where to write the report (default: STUDY/report)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap replicates (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default: 0)")
    parser.add_argument(
        "--readers",
        action="store_true",
        help="toy-world studies: compare with the attribute readers' ranking (needs torch)",
    )


def run(args: argparse.Namespace) -> int:
    out = args.out if args.out is not None else args.study / "report"
    answers = args.answers
    if args.url:
        if not args.token:
            print("blending survey report: error: --url needs --token (or $BLENDING_SURVEY_TOKEN)", file=sys.stderr)
            return 2
        answers = fetch_answers(args.url, args.token, answers or out / "answers.csv")
    elif answers is None and (args.study / "answers.sqlite").exists():
        answers = answers_from_sqlite(args.study)
    elif answers is None:
        answers = out / "answers.csv"
    if isinstance(answers, Path) and not answers.exists():
        print(
            f"blending survey report: error: no answers at {answers}; give --answers CSV or --url URL --token TOKEN",
            file=sys.stderr,
        )
        return 2
    truth = None
    if args.readers:
        from .simulate import readers_ranking

        truth = readers_ranking(args.study)
    summary = report(answers, args.study / "design.json", out, resamples=args.resamples, seed=args.seed, truth=truth)
    print(f"{out / 'report.md'}: ranking {', '.join(summary['ranking'])}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="blending survey report", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
