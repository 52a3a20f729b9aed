"""The controlled world's plain-words findings: a swap of the prompts is measured on both prompts'
concepts, with the numbers the order table shows; the numbers chapter 6's prose quotes about CLIP
(how often its pick is right, the methods' ranks) are those its tables show. Hand-made shares and
records, no study run."""

import math
import re

from blending.methods import METHODS
from blending.toy.agreement import BestMethods, method_means, method_ranks, pick_rate
from blending.toy.report import (
    SwapMove,
    best_method_table,
    findings,
    largest_swap_moves,
    method_means_table,
    order_table,
    swap_moves,
)
from blending.toy.study import Share


def share(swapped: bool, method: str, attribute: str, from_1: float, from_2: float, neither: float) -> Share:
    fractions = {"prompt_1": from_1, "prompt_2": from_2, "neither": neither}
    return Share(
        swapped,
        method,
        0.5,
        attribute,
        blends=100,
        pairs=4,
        fractions=fractions,
        intervals={s: (max(0.0, f - 0.1), min(1.0, f + 0.1)) for s, f in fractions.items()},
    )


def cells(method: str, rows: dict[str, tuple[tuple[float, ...], tuple[float, ...]]]) -> list[Share]:
    """``rows``: attribute -> (in order, swapped), each (from 1, from 2, neither)."""
    return [
        share(swapped, method, attribute, *values)
        for attribute, orders in rows.items()
        for swapped, values in zip((False, True), orders)
    ]


# chapter 6's ALTERNATE: prompt 1's concept moves 12 points at most, prompt 2's colour 32
ALTERNATE = cells(
    "alternate",
    {
        "shape": ((0.32, 0.28, 0.40), (0.37, 0.28, 0.35)),
        "colour": ((0.20, 0.18, 0.62), (0.50, 0.08, 0.42)),
        "size": ((0.35, 0.40, 0.25), (0.43, 0.36, 0.21)),
    },
)
# chapter 6's UNET: comparing prompt 1's concept alone gives 96; prompt 2's colour goes from 100% to 0%
UNET = cells(
    "unet",
    {
        "shape": ((0.01, 0.96, 0.03), (0.00, 0.97, 0.03)),
        "colour": ((0.00, 1.00, 0.00), (0.00, 0.93, 0.07)),
        "size": ((0.01, 0.99, 0.00), (0.00, 0.96, 0.04)),
    },
)


def method_line(text: str, method: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(f"- **{method.upper()}**")]
    return line


def test_a_swap_is_measured_on_prompt_2s_concept_too():
    moves = largest_swap_moves(ALTERNATE)
    assert moves == {"alternate": SwapMove("alternate", 0.5, "colour", "prompt_2", in_order=18, swapped=50)}
    assert moves["alternate"].points == 32
    line = method_line(findings(ALTERNATE), "alternate")
    assert "by up to 32 points (the colour of the pairs' prompt 2: 18% in order, 50% swapped)" in line
    assert "12 points" not in line


def test_a_concept_that_leaves_entirely_moves_100_points():
    moves = largest_swap_moves(UNET)
    assert moves["unet"] == SwapMove("unet", 0.5, "colour", "prompt_2", in_order=100, swapped=0)
    assert moves["unet"].points == 100
    line = method_line(findings(UNET), "unet")
    assert "by up to 100 points" in line and "96 points" not in line


def test_the_moves_are_those_of_the_order_table():
    """Each move is the difference of two percentages in the order table: *from 1* in one order
    against *from 2* in the other for a concept, *neither* against *neither*."""
    shares = ALTERNATE + UNET
    table = {}
    for row in order_table(shares).splitlines()[2:]:
        method, attribute, forward, swapped = (cell.strip() for cell in row.strip("|").split("|"))
        table[method.lower(), attribute] = [[int(p) for p in re.findall(r"(\d+)%", t)] for t in (forward, swapped)]
    moves = swap_moves(shares)
    assert len(moves) == 2 * 3 * 3
    other = {"prompt_1": 1, "prompt_2": 0, "neither": 2}
    for move in moves:
        forward, swapped = table[move.method, move.attribute]
        index = ("prompt_1", "prompt_2", "neither").index(move.source)
        assert (move.in_order, move.swapped) == (forward[index], swapped[other[move.source]])
        assert move.points == abs(swapped[other[move.source]] - forward[index])


def test_the_sentence_uses_the_tables_rounding():
    # unrounded, the colour of prompt 1 moves 29.2 points; the table shows 20% and 50%
    shares = cells("textual", {"colour": ((0.204, 0.30, 0.496), (0.30, 0.496, 0.204))})
    assert "| 20% / 30% / 50% | 30% / 50% / 20% |" in order_table(shares)
    assert largest_swap_moves(shares)["textual"].points == 30
    assert "by up to 30 points" in findings(shares)


def test_an_unmoved_swap_says_so():
    shares = cells("textual", {"size": ((0.46, 0.54, 0.004), (0.54, 0.46, 0.0))})
    assert largest_swap_moves(shares)["textual"].points == 0
    assert findings(shares).endswith("Swapping the prompts leaves every concept's share as it was (within a point).")


def test_a_neither_share_that_moves_further_is_named():
    # both concepts lose 20 points to neither, which gains 40
    shares = cells("switch", {"shape": ((0.40, 0.40, 0.20), (0.20, 0.20, 0.60))})
    assert largest_swap_moves(shares)["switch"].points == 20
    assert largest_swap_moves(shares, sources=("neither",))["switch"] == SwapMove(
        "switch", 0.5, "shape", "neither", in_order=20, swapped=60
    )
    assert findings(shares).endswith(
        "Swapping the prompts moves a concept's share by up to 20 points (the shape of the pairs' prompt 1: "
        "40% in order, 20% swapped), and the share from neither prompt by up to 40 points "
        "(shape: 20% in order, 60% swapped)."
    )


def test_one_order_only_reports_no_swap():
    shares = [sh for sh in ALTERNATE if not sh.swapped]
    assert largest_swap_moves(shares) == {} and swap_moves(shares) == []
    assert "Swapping" not in findings(shares)


def best(pair: int, clip_best: str, *truth_best: str) -> BestMethods:
    return BestMethods(pair, False, 0.5, clip_best, truth_best, len(METHODS))


def test_the_pick_rate_is_the_best_method_tables():
    rows = [
        best(0, "alternate", "textual"),  # wrong; chance 1/4
        best(1, "textual", "textual", "switch"),  # right; chance 2/4
        best(2, "unet", "unet"),  # right; chance 1/4
        best(3, "unet", *METHODS),  # every method ties: left out
    ]
    rate = pick_rate(rows)
    assert (rate.cells, rate.informative, rate.right) == (4, 3, 2)
    assert math.isclose(rate.rate, 2 / 3) and math.isclose(rate.chance, (1 / 4 + 2 / 4 + 1 / 4) / 3)
    assert "| coverage | 4 | 1 | 2 of 3 (67%) | 33% |" in best_method_table({"coverage": rows})
    nothing = pick_rate([best(3, "unet", *METHODS)])
    assert (nothing.informative, nothing.right) == (0, 0) and math.isnan(nothing.rate) and math.isnan(nothing.chance)


def test_method_ranks_count_from_the_highest_on_each_side():
    means = {"textual": (0.13, 10.9), "switch": (0.11, 13.6), "unet": (0.0, 6.1), "alternate": (0.09, 13.7)}
    assert method_ranks(means) == {"textual": (1, 3), "switch": (2, 2), "unet": (4, 4), "alternate": (3, 1)}
    # equal means keep the order given
    assert method_ranks({"textual": (0.5, 1.0), "switch": (0.5, 1.0)}) == {"textual": (1, 1), "switch": (2, 2)}


def record(method: str, seed: int, sources: tuple[str, str, str], text_1: float, text_2: float) -> dict:
    coverage, total = min(text_1, text_2), text_1 + text_2
    return {
        "pair": 0,
        "swapped": False,
        "prompt_1": "a large red circle",
        "prompt_2": "a small blue star",
        "method": method,
        "ratio": 0.5,
        "seed": seed,
        **{f"{a}_source": s for a, s in zip(("shape", "colour", "size"), sources)},
        "text_1": text_1,
        "text_2": text_2,
        "coverage": coverage,
        "balance": 1 - abs(text_1 - text_2) / total,
    }


def test_the_method_means_table_shows_method_ranks():
    sources = {
        "textual": ("prompt_1", "prompt_2", "prompt_2"),
        "switch": ("prompt_1", "prompt_1", "prompt_2"),
        "unet": ("prompt_2",) * 3,
        "alternate": ("prompt_1", "neither", "neither"),
    }
    texts = {"textual": (20, 10), "switch": (12, 10), "unet": (30, 2), "alternate": (15, 15)}
    records = [record(m, seed, sources[m], *texts[m]) for m in METHODS for seed in range(2)]
    table = method_means_table(records)
    for measure, columns in (("coverage", (1, 2)), ("balance", (3, 4))):
        ranks = method_ranks(method_means(records, measure))
        for row in table.splitlines()[2:]:
            cells = [cell.strip() for cell in row.strip("|").split("|")]
            shown = tuple(int(re.search(r"\((\d)\)", cells[c]).group(1)) for c in columns)
            assert shown == ranks[cells[0].lower()]
