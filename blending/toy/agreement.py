"""Do CLIP's blend scores agree with the truth? The controlled world knows the truth.

The blending literature scores blends with CLIP (:mod:`blending.scores.clip`): a blend that is close
to both prompts' texts "covers" both concepts, one equally close to both is "balanced". In the
toy world the attribute readers say what a blend actually took from each prompt, so the same
two numbers can be computed from the truth (:class:`ReaderScores`) and the two compared, blend
by blend, over the records of a study (:func:`blending.toy.study.run_study` with a scorer):

- :func:`score_agreement`: Spearman's rank correlation between each CLIP number and the
  readers' number of the same name, with a 95% interval from a two-stage bootstrap: pairs with
  replacement (the blends of one pair are not independent of each other), then blends within
  each drawn pair, as :func:`blending.toy.study.attribute_shares` does with seeds.
- :func:`method_means`: each method's mean readers' and CLIP number at one ratio: does CLIP
  rank the methods as the truth does?
- :func:`truth_groups`: CLIP's mean numbers for the blends that in truth take from both
  prompts, from one only, or from neither: can CLIP tell a failed blend from a partial one?
- :func:`best_methods`: for each pair, order and ratio, the method with the highest mean CLIP
  number against the methods with the highest mean readers' number: how often would "pick the
  method CLIP likes best" pick a method that is best in truth? :func:`pick_rate` counts it, and
  :func:`method_ranks` ranks the methods by :func:`method_means`.

Only blends (ratios strictly between 0 and 1) count; at ratios 0 and 1 every method is a
plain image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..methods import METHODS
from .study import ATTRIBUTES, attribute_of_prompt

__all__ = [
    "MEASURES",
    "TRUTH_GROUPS",
    "Agreement",
    "BestMethods",
    "ReaderScores",
    "PickRate",
    "TruthGroup",
    "best_methods",
    "cell_means",
    "clip_value",
    "method_means",
    "method_ranks",
    "pick_rate",
    "reader_scores",
    "score_agreement",
    "spearman",
    "truth_groups",
]

#: What is compared; the leaning is towards prompt 1 (positive) or prompt 2 (negative).
MEASURES = ("leaning", "coverage", "balance")


@dataclass(frozen=True)
class ReaderScores:
    """The readers' truth about one blend, in the terms of :class:`blending.scores.clip.BlendScores`.

    ``share_1``, ``share_2``: the fractions of the attributes the prompts name differently that
    the blend takes from prompt 1 and from prompt 2 (a pair differing in shape and colour whose
    blend has prompt 1's shape and prompt 2's colour: 1/2 and 1/2).

    - ``coverage = min(share_1, share_2)``: how much of the less-present prompt the blend shows.
      Only defined with at least two differing attributes (with one, it is always 0).
    - ``balance = 1 - |share_1 - share_2| / (share_1 + share_2)``; NaN when the blend takes
      nothing from either prompt.
    - ``leaning = share_1 - share_2``: which prompt the blend is closer to.
    """

    share_1: float
    share_2: float
    differing: int

    @property
    def coverage(self) -> float:
        return min(self.share_1, self.share_2) if self.differing >= 2 else math.nan

    @property
    def balance(self) -> float:
        total = self.share_1 + self.share_2
        return 1 - abs(self.share_1 - self.share_2) / total if total > 0 and self.differing >= 2 else math.nan

    @property
    def leaning(self) -> float:
        return self.share_1 - self.share_2


def reader_scores(record: dict) -> ReaderScores:
    """The :class:`ReaderScores` of one study record."""
    named_1, named_2 = attribute_of_prompt(record["prompt_1"]), attribute_of_prompt(record["prompt_2"])
    differing = [a for a in ATTRIBUTES if named_1[a] != named_2[a]]
    if not differing:
        raise ValueError(f"record: the prompts {record['prompt_1']!r} and {record['prompt_2']!r} are the same")
    sources = [record[f"{a}_source"] for a in differing]
    return ReaderScores(
        sources.count("prompt_1") / len(differing), sources.count("prompt_2") / len(differing), len(differing)
    )


def clip_value(record: dict, measure: str) -> float:
    """CLIP's number for one record: its ``coverage`` or ``balance``, or its leaning
    ``(text_1 - text_2) / (text_1 + text_2)``."""
    if measure == "leaning":
        # relative, like balance: the text scores' scale differs from prompt to prompt
        total = record["text_1"] + record["text_2"]
        return (record["text_1"] - record["text_2"]) / total if total > 0 else math.nan
    return record[measure]


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    # runs of equal values: each gets the mean of the positions it spans
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(ordered)]
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return ranks


def spearman(x, y) -> float:
    """Spearman's rank correlation (ties get their mean rank); NaN when either side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"x and y must be two 1-d sequences of the same length >= 2, got {x.shape} and {y.shape}")
    rx, ry = _ranks(x) - (len(x) + 1) / 2, _ranks(y) - (len(y) + 1) / 2
    denominator = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denominator) if denominator > 0 else math.nan


@dataclass(frozen=True)
class Agreement:
    """How well one CLIP number ranks blends as the readers' number of the same name does."""

    measure: str
    blends: int
    pairs: int
    rho: float
    interval: tuple[float, float]


def _blends(records: list[dict]) -> list[dict]:
    blends = [r for r in records if 0 < r["ratio"] < 1]
    if not blends:
        raise ValueError("records: no blends (ratios strictly between 0 and 1)")
    if "text_1" not in blends[0]:
        raise ValueError("records: no CLIP scores; run the study with a scorer")
    return blends


def score_agreement(records: list[dict], *, resamples: int = 1000, seed: int = 0) -> list[Agreement]:
    """For each of :data:`MEASURES`: Spearman's rho between CLIP's and the readers' number, over
    every blend where both are defined, with a 95% interval from a two-stage bootstrap (pairs
    with replacement, then the blends of each drawn pair with replacement)."""
    rng = np.random.default_rng(seed)
    blends = _blends(records)
    agreements = []
    for measure in MEASURES:
        by_pair: dict[int, list[tuple[float, float]]] = {}
        for r in blends:
            clip, truth = clip_value(r, measure), getattr(reader_scores(r), measure)
            if not (math.isnan(clip) or math.isnan(truth)):
                by_pair.setdefault(r["pair"], []).append((clip, truth))
        if not by_pair:
            continue
        groups = [np.array(values) for _, values in sorted(by_pair.items())]
        everything = np.concatenate(groups)
        rho = spearman(everything[:, 0], everything[:, 1])
        drawn = []
        for _ in range(resamples):
            chosen = [groups[i] for i in rng.integers(len(groups), size=len(groups))]
            sample = np.concatenate([g[rng.integers(len(g), size=len(g))] for g in chosen])
            drawn.append(spearman(sample[:, 0], sample[:, 1]))
        low, high = np.nanquantile(drawn, [0.025, 0.975])
        agreements.append(Agreement(measure, len(everything), len(groups), rho, (float(low), float(high))))
    return agreements


@dataclass(frozen=True)
class BestMethods:
    """For one (pair, order, ratio): the method with the highest mean CLIP number, and the
    methods whose mean readers' number is highest (several when they tie)."""

    pair: int
    swapped: bool
    ratio: float
    clip_best: str
    truth_best: tuple[str, ...]
    methods: int

    @property
    def agree(self) -> bool:
        return self.clip_best in self.truth_best

    @property
    def informative(self) -> bool:
        """Whether a pick can be wrong: not when every method ties in truth, since then any pick is right."""
        return len(self.truth_best) < self.methods


def _check_measure(measure: str) -> None:
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")


def cell_means(records: list[dict], measure: str) -> dict[tuple, tuple[float, float]]:
    """Per (pair, swapped, ratio, method) of blends: the mean over its seeds of the readers' and
    of CLIP's ``measure``. Cells where the readers' number is undefined are left out."""
    _check_measure(measure)
    values: dict[tuple, list[tuple[float, float]]] = {}
    for r in _blends(records):
        truth = getattr(reader_scores(r), measure)
        if not math.isnan(truth):
            values.setdefault((r["pair"], r["swapped"], r["ratio"], r["method"]), []).append(
                (truth, clip_value(r, measure))
            )
    return {key: tuple(float(m) for m in np.nanmean(np.array(v), axis=0)) for key, v in sorted(values.items())}


def best_methods(records: list[dict], measure: str = "coverage") -> list[BestMethods]:
    """CLIP's best method against the readers' best, for each (pair, order, ratio) of blends.

    Cells where the readers' number is undefined (``coverage`` and ``balance`` for pairs that
    differ in one attribute) are left out. Chance agreement for a cell is
    ``len(truth_best) / methods``.
    """
    by_cell: dict[tuple, dict[str, tuple[float, float]]] = {}
    for (pair, swapped, ratio, method), means in cell_means(records, measure).items():
        by_cell.setdefault((pair, swapped, ratio), {})[method] = means
    rows = []
    for (pair, swapped, ratio), by_method in by_cell.items():
        top = max(truth for truth, _ in by_method.values())
        truth_best = tuple(m for m in METHODS if m in by_method and math.isclose(by_method[m][0], top, abs_tol=1e-12))
        clip_best = max(by_method, key=lambda m: by_method[m][1])
        rows.append(BestMethods(pair, swapped, ratio, clip_best, truth_best, len(by_method)))
    return rows


@dataclass(frozen=True)
class PickRate:
    """How often CLIP's best method is a best one in truth, over the :class:`BestMethods` of one
    measure: ``right`` of the ``informative`` cells (those where the methods do not all tie in
    truth; ``cells`` counts them all), against ``chance``, the rate a random pick reaches (the
    mean over the informative cells of ``len(truth_best) / methods``; NaN without any)."""

    cells: int
    informative: int
    right: int
    chance: float

    @property
    def rate(self) -> float:
        """``right / informative``; NaN without informative cells."""
        return self.right / self.informative if self.informative else math.nan


def pick_rate(rows: list[BestMethods]) -> PickRate:
    """The :class:`PickRate` of :func:`best_methods`' rows."""
    informative = [r for r in rows if r.informative]
    chance = sum(len(r.truth_best) / r.methods for r in informative) / len(informative) if informative else math.nan
    return PickRate(len(rows), len(informative), sum(r.agree for r in informative), chance)


def method_means(records: list[dict], measure: str, ratio: float = 0.5) -> dict[str, tuple[float, float]]:
    """Per method, at ``ratio``: the readers' and CLIP's mean ``measure``, over the cells of
    :func:`cell_means` (each pair and order weighs the same, whatever its number of seeds)."""
    by_method: dict[str, list[tuple[float, float]]] = {}
    for (_, _, cell_ratio, method), means in cell_means(records, measure).items():
        if math.isclose(cell_ratio, ratio):
            by_method.setdefault(method, []).append(means)
    if not by_method:
        raise ValueError(f"ratio: no blends with a defined {measure} at {ratio}")
    return {m: tuple(float(v) for v in np.mean(by_method[m], axis=0)) for m in METHODS if m in by_method}


def method_ranks(means: dict[str, tuple[float, float]]) -> dict[str, tuple[int, int]]:
    """Each method's rank among ``means`` (:func:`method_means`), 1 for the highest: by the
    readers' mean and by CLIP's. Equal means keep the order of ``means``."""
    ranks = {m: [0, 0] for m in means}
    for side in (0, 1):
        for rank, method in enumerate(sorted(means, key=lambda m: -means[m][side]), start=1):
            ranks[method][side] = rank
    return {m: (r[0], r[1]) for m, r in ranks.items()}


#: How much of the two prompts a blend takes, in truth (of the attributes they name differently).
TRUTH_GROUPS = ("both prompts", "one prompt only", "neither prompt")


@dataclass(frozen=True)
class TruthGroup:
    """The blends of one of :data:`TRUTH_GROUPS`: how many (in all and per method), and CLIP's
    mean coverage and balance over them (NaN balances left out)."""

    name: str
    blends: int
    by_method: dict[str, int]
    coverage: float
    balance: float


def truth_groups(records: list[dict]) -> list[TruthGroup]:
    """The blends of pairs that differ in at least two attributes, grouped by what they take in
    truth: something from each prompt, from one prompt only, or nothing from either (a third
    shape or colour, no readable object). If CLIP's coverage followed the truth, the second and
    third groups would both score low."""
    groups: dict[str, list[dict]] = {name: [] for name in TRUTH_GROUPS}
    for r in _blends(records):
        truth = reader_scores(r)
        if truth.differing < 2:
            continue
        takes = (truth.share_1 > 0) + (truth.share_2 > 0)
        groups[TRUTH_GROUPS[2 - takes]].append(r)
    if not any(groups.values()):
        raise ValueError("records: no blends of pairs that differ in two attributes or more")
    return [
        TruthGroup(
            name,
            len(rows),
            {m: sum(r["method"] == m for r in rows) for m in METHODS},
            float(np.mean([r["coverage"] for r in rows])) if rows else math.nan,
            float(np.nanmean([r["balance"] for r in rows])) if rows else math.nan,
        )
        for name, rows in groups.items()
    ]
