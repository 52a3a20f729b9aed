"""Figures, tables and plain-words findings of the controlled-world study."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from ..methods import METHODS
from ..testing.components import unet_skeleton
from .study import ATTRIBUTES, DISTINCT_SOURCES, Share, attribute_of_prompt, source_of
from .world import HELD_OUT, caption, render, sample_attributes

__all__ = [
    "agreement_figure",
    "agreement_table",
    "attribute_curves",
    "best_method_table",
    "findings",
    "generations_figure",
    "largest_swap_moves",
    "order_table",
    "pairs_table",
    "scored_examples_table",
    "SwapMove",
    "swap_moves",
    "wiring_table",
    "world_figure",
]

_COLOURS = {"prompt_1": "#1f77b4", "prompt_2": "#d62728", "neither": "#7f7f7f"}
_LABELS = {"prompt_1": "from prompt 1", "prompt_2": "from prompt 2", "neither": "neither"}


def world_figure(count: int = 12, seed: int = 0) -> Figure:
    """Pictures of the world with their full captions."""
    rng = random.Random(seed)
    figure = Figure(figsize=(1.6 * count / 2, 3.8), layout="constrained")
    axes = figure.subplots(2, count // 2)
    for ax in axes.flat:
        attributes = sample_attributes(rng, held_out=True)
        ax.imshow(render(attributes))
        ax.set_title(caption(attributes).removeprefix("a "), fontsize=8)
        ax.set_axis_off()
    return figure


def generations_figure(pipe, prompts: list[str], seeds: list[int], **kwargs) -> Figure:
    """Plain generations: one row per prompt, one column per seed."""
    import torch

    figure = Figure(figsize=(1.3 * len(seeds) + 1.8, 1.35 * len(prompts)), layout="constrained")
    axes = np.atleast_2d(figure.subplots(len(prompts), len(seeds)))
    for row, prompt in zip(axes, prompts):
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        images = pipe(prompt, num_images_per_prompt=len(seeds), generator=generators, output_type="np", **kwargs).images
        for ax, image in zip(row, images):
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(prompt.removeprefix("a "), fontsize=8, rotation=0, ha="right", va="center")
    return figure


def pairs_table(records: list[dict]) -> str:
    """A markdown table of a study's pairs (in their own order): what differs, what the model never saw."""
    held_out = {f"a {size} {colour} {shape}" for shape, colour, size in HELD_OUT}
    pairs = {r["pair"]: (r["prompt_1"], r["prompt_2"]) for r in records if not r["swapped"]}
    lines = [
        "| pair | prompt 1 | prompt 2 | they differ in | never seen in training |",
        "| --- | --- | --- | --- | --- |",
    ]
    for pair, (first, second) in sorted(pairs.items()):
        named_1, named_2 = attribute_of_prompt(first), attribute_of_prompt(second)
        differ = ", ".join(a for a in ATTRIBUTES if named_1[a] != named_2[a])
        unseen = ", ".join(p for p in (first, second) if p in held_out) or "-"
        lines.append(f"| {pair} | {first} | {second} | {differ} | {unseen} |")
    return "\n".join(lines)


def scored_examples_table(results, scorer, net) -> str:
    """A markdown table: for each blend of ``results`` (one :class:`~blending.BlendResult` per
    seed), where the readers see each attribute coming from, next to its CLIP scores."""
    from ..scores.clip import clip_scores
    from .readers import read

    short = {"prompt_1": "1", "prompt_2": "2", "both": "both", "neither": "-"}
    lines = [
        "| seed | method | shape / colour / size from | CLIP text 1 | CLIP text 2 | coverage | balance |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results:
        named_1, named_2 = (
            attribute_of_prompt(result.settings["prompt_1"]),
            attribute_of_prompt(result.settings["prompt_2"]),
        )
        scores = clip_scores(result, scorer)
        readings = read([result.blends[m] for m in result.blends], net)
        for method, reading in zip(result.blends, readings):
            sources = " / ".join(short[source_of(getattr(reading, a), named_1[a], named_2[a])] for a in ATTRIBUTES)
            s = scores[method]
            lines.append(
                f"| {result.settings['seed']} | {method.upper()} | {sources} | {s.text_1:.1f} | {s.text_2:.1f} "
                f"| {s.coverage:.1f} | {s.balance:.2f} |"
            )
    return "\n".join(lines)


def _by_cell(shares: list[Share]) -> dict[tuple, Share]:
    return {(sh.swapped, sh.method, sh.ratio, sh.attribute): sh for sh in shares}


def attribute_curves(shares: list[Share]) -> Figure:
    """One panel per method and attribute: where the attribute comes from, against the ratio
    (pairs' order), with the study's 95% intervals."""
    methods = sorted({sh.method for sh in shares}, key=list(METHODS).index)
    figure = Figure(figsize=(11, 2.3 * len(methods)), layout="constrained")
    axes = np.atleast_2d(figure.subplots(len(methods), len(ATTRIBUTES), sharex=True, sharey=True))
    for row, method in zip(axes, methods):
        for ax, attribute in zip(row, ATTRIBUTES):
            cells = sorted(
                (sh.ratio, sh) for sh in shares if not sh.swapped and sh.method == method and sh.attribute == attribute
            )
            ratios = [r for r, _ in cells]
            for source in DISTINCT_SOURCES:
                values = np.array([sh.fractions[source] for _, sh in cells])
                low, high = np.array([sh.intervals[source] for _, sh in cells]).T
                ax.plot(ratios, values, marker="o", color=_COLOURS[source], label=_LABELS[source])
                ax.fill_between(ratios, low, high, color=_COLOURS[source], alpha=0.15)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{method.upper()}: {attribute}", fontsize=9)
            ax.grid(alpha=0.3)
        row[0].set_ylabel("fraction of blends")
    for ax in axes[-1]:
        ax.set_xlabel("ratio (weight of prompt 2)")
    axes[0, -1].legend(fontsize=8, loc="center right")
    return figure


def _percent(fraction: float) -> int:
    """A fraction as the whole percentage the tables show (so prose computed from it agrees)."""
    return int(f"{100 * fraction:.0f}")


def order_table(shares: list[Share], ratio: float = 0.5) -> str:
    """A markdown table: at ``ratio``, each attribute's source in both prompt orders."""
    cells = _by_cell(shares)
    lines = [
        "| method | attribute | in order: from 1 / from 2 / neither | swapped: from 1 / from 2 / neither |",
        "| --- | --- | --- | --- |",
    ]
    for method in METHODS:
        for attribute in ATTRIBUTES:
            texts = []
            for swapped in (False, True):
                sh = cells.get((swapped, method, ratio, attribute))
                texts.append(
                    "n/a" if sh is None else " / ".join(f"{_percent(sh.fractions[s])}%" for s in DISTINCT_SOURCES)
                )
            lines.append(f"| {method.upper()} | {attribute} | {texts[0]} | {texts[1]} |")
    return "\n".join(lines)


#: With the prompts swapped, what each source of the pairs' own order is called.
_SWAPPED_SOURCE = {"prompt_1": "prompt_2", "prompt_2": "prompt_1", "neither": "neither"}


@dataclass(frozen=True)
class SwapMove:
    """How one share moves at ``ratio`` when a method's prompts are swapped, in the whole
    percentages :func:`order_table` shows.

    ``source`` names the share in the pairs' own order: ``"prompt_1"`` is the concept (shape,
    colour or size) named by the pairs' prompt 1, which the swapped order calls prompt 2;
    ``"prompt_2"`` likewise; ``"neither"`` is the share from neither prompt in both orders.
    ``in_order`` and ``swapped`` are that share's percentages in the two orders (in the table,
    *from 1* in one order against *from 2* in the other); ``points`` how far it moves.
    """

    method: str
    ratio: float
    attribute: str
    source: str
    in_order: int
    swapped: int

    @property
    def points(self) -> int:
        """How many percentage points the share moves (as the table's numbers differ)."""
        return abs(self.swapped - self.in_order)


def swap_moves(shares: list[Share], ratio: float = 0.5) -> list[SwapMove]:
    """Every share's move at ``ratio`` when the prompts are swapped: per method (in
    :data:`~blending.methods.METHODS` order), attribute and source (prompt 1's concept, prompt
    2's concept, neither), for the cells :func:`order_table` shows in both orders."""
    cells = _by_cell(shares)
    moves = []
    for method in METHODS:
        for attribute in ATTRIBUTES:
            forward, swapped = (cells.get((order, method, ratio, attribute)) for order in (False, True))
            if forward is None or swapped is None:
                continue
            for source in DISTINCT_SOURCES:
                moves.append(
                    SwapMove(
                        method,
                        ratio,
                        attribute,
                        source,
                        in_order=_percent(forward.fractions[source]),
                        swapped=_percent(swapped.fractions[_SWAPPED_SOURCE[source]]),
                    )
                )
    return moves


def largest_swap_moves(
    shares: list[Share], ratio: float = 0.5, sources: tuple[str, ...] = ("prompt_1", "prompt_2")
) -> dict[str, SwapMove]:
    """For each method with both orders at ``ratio``: its largest :class:`SwapMove` among
    ``sources`` (by default both prompts' concepts; ``("neither",)`` for the share from neither
    prompt). Ties go to the first attribute, then prompt 1's concept. Keys are the methods, in
    :data:`~blending.methods.METHODS` order."""
    largest: dict[str, SwapMove] = {}
    for move in swap_moves(shares, ratio):
        if move.source in sources and (move.method not in largest or move.points > largest[move.method].points):
            largest[move.method] = move
    return largest


def _swap_sentence(concept: SwapMove, neither: SwapMove | None) -> str:
    if concept.points == 0 and (neither is None or neither.points == 0):
        return "Swapping the prompts leaves every concept's share as it was (within a point)."
    if concept.points == 0:
        sentence = "Swapping the prompts leaves every concept's share as it was (within a point)"
    else:
        prompt = concept.source.removeprefix("prompt_")
        sentence = (
            f"Swapping the prompts moves a concept's share by up to {concept.points} points "
            f"(the {concept.attribute} of the pairs' prompt {prompt}: {concept.in_order}% in order, "
            f"{concept.swapped}% swapped)"
        )
    if neither is not None and neither.points > concept.points:
        link = ", but" if concept.points == 0 else ", and"
        sentence += (
            f"{link} the share from neither prompt by up to {neither.points} points "
            f"({neither.attribute}: {neither.in_order}% in order, {neither.swapped}% swapped)"
        )
    return sentence + "."


def findings(shares: list[Share], ratio: float = 0.5) -> str:
    """What the shares say at ``ratio``, in plain words (markdown).

    For a method with both orders, how far swapping the prompts moves a share: the largest move
    of either prompt's concept (:func:`largest_swap_moves`), and that of the share from neither
    prompt where it moves further, each computed from the percentages :func:`order_table` shows.
    """
    cells = _by_cell(shares)
    concepts = largest_swap_moves(shares, ratio)
    neither = largest_swap_moves(shares, ratio, sources=("neither",))
    where = {"prompt_1": "prompt 1", "prompt_2": "prompt 2", "neither": "neither prompt"}
    sentences = []
    for method in METHODS:
        parts = []
        for attribute in ATTRIBUTES:
            sh = cells.get((False, method, ratio, attribute))
            if sh is None:
                continue
            first, second = sorted(DISTINCT_SOURCES, key=sh.fractions.get, reverse=True)[:2]
            low, high = sh.intervals[first]
            interval = f"95% interval {100 * low:.0f}–{100 * high:.0f}%"
            if low <= sh.fractions[second]:
                # the runner-up lies inside the leader's interval: no clear leader
                parts.append(
                    f"{attribute} from {where[first]} ({_percent(sh.fractions[first])}%, {interval}) as often as "
                    f"from {where[second]} ({_percent(sh.fractions[second])}%)"
                )
            else:
                how = "mostly" if sh.fractions[first] > 0.5 else "most often"
                parts.append(f"{attribute} {how} from {where[first]} ({_percent(sh.fractions[first])}%, {interval})")
        if not parts:
            continue
        sentences.append(f"- **{method.upper()}** takes its " + "; ".join(parts) + ".")
        if method in concepts:
            sentences[-1] += " " + _swap_sentence(concepts[method], neither.get(method))
    return "\n".join(sentences)


def _layers_by_part(unet) -> dict[str, int]:
    from ..attention import cross_attention_layout

    names = cross_attention_layout(unet).names
    return {part: sum(n.startswith(part) for n in names) for part in ("down_blocks", "mid_block", "up_blocks")}


def wiring_table(unet) -> str:
    """A markdown table: the toy U-Net's wiring next to Stable Diffusion v1.4's, counted the same way."""
    sd = unet_skeleton("sd-v1-4")
    rows = [("", "this model", "Stable Diffusion v1.4")]
    for name, get in (
        ("down blocks", lambda u: ", ".join(t.removesuffix("2D") for t in u.config.down_block_types)),
        ("up blocks", lambda u: ", ".join(t.removesuffix("2D") for t in u.config.up_block_types)),
        ("layers per block", lambda u: str(u.config.layers_per_block)),
        ("widths", lambda u: ", ".join(map(str, u.config.block_out_channels))),
        ("latent grid", lambda u: f"{u.config.sample_size}x{u.config.sample_size}"),
        ("cross-attention layers: down / mid / up", lambda u: " / ".join(map(str, _layers_by_part(u).values()))),
        ("parameters", lambda u: f"{sum(p.numel() for p in u.parameters()) / 1e6:,.1f} M"),
    ):
        rows.append((name, get(unet), get(sd)))
    lines = [f"| {' | '.join(rows[0])} |", "| --- | --- | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in rows[1:]]
    return "\n".join(lines)


# -- CLIP against the readers' truth ----------------------------------------------------------

_MEASURE_WORDS = {
    "leaning": "leaning (towards prompt 1 or 2)",
    "coverage": "coverage (the less-present prompt)",
    "balance": "balance (as close to one as to the other)",
}


def agreement_table(agreements) -> str:
    """A markdown table of :func:`blending.toy.agreement.score_agreement`."""
    lines = [
        "| CLIP's number against the readers' | blends | pairs | Spearman's rho (95% interval) |",
        "| --- | --- | --- | --- |",
    ]
    for a in agreements:
        lines.append(
            f"| {_MEASURE_WORDS[a.measure]} | {a.blends:,} | {a.pairs} | {a.rho:.2f} ({a.interval[0]:.2f} to {a.interval[1]:.2f}) |"
        )
    return "\n".join(lines)


def best_method_table(rows_by_measure: dict) -> str:
    """A markdown table: for each measure, how often CLIP's best method (highest mean over the
    seeds of a pair, order and ratio) is one of the readers' best, against chance
    (:func:`blending.toy.agreement.pick_rate`)."""
    from .agreement import pick_rate

    lines = [
        "| measure | cells | all methods tie in truth | CLIP picks a best method | by chance |",
        "| --- | --- | --- | --- | --- |",
    ]
    for measure, rows in rows_by_measure.items():
        rate = pick_rate(rows)
        if not rate.informative:
            lines.append(f"| {measure} | {rate.cells} | {rate.cells} | n/a | n/a |")
            continue
        lines.append(
            f"| {measure} | {rate.cells} | {rate.cells - rate.informative} | {rate.right} of {rate.informative} "
            f"({100 * rate.rate:.0f}%) | {100 * rate.chance:.0f}% |"
        )
    return "\n".join(lines)


def method_means_table(records: list[dict], ratio: float = 0.5) -> str:
    """A markdown table: each method's mean readers' and CLIP coverage and balance at ``ratio``
    (:func:`blending.toy.agreement.method_means`), each with its rank among the methods."""
    from .agreement import method_means, method_ranks

    columns = []
    for measure in ("coverage", "balance"):
        means = method_means(records, measure, ratio)
        ranks = method_ranks(means)
        for side, fmt in ((0, "{:.2f}"), (1, "{:.1f}" if measure == "coverage" else "{:.2f}")):
            columns.append({m: f"{fmt.format(means[m][side])} ({ranks[m][side]})" for m in means})
    lines = [
        "| method | readers' coverage | CLIP's coverage | readers' balance | CLIP's balance |",
        "| --- | --- | --- | --- | --- |",
    ]
    for method in columns[0]:
        lines.append(f"| {method.upper()} | " + " | ".join(column.get(method, "n/a") for column in columns) + " |")
    return "\n".join(lines)


def truth_groups_table(records: list[dict]) -> str:
    """A markdown table of :func:`blending.toy.agreement.truth_groups`."""
    from .agreement import truth_groups

    methods = " / ".join(m.upper() for m in METHODS)
    lines = [
        f"| in truth, the blend takes from | blends | of which {methods} | CLIP's coverage | CLIP's balance |",
        "| --- | --- | --- | --- | --- |",
    ]
    for g in truth_groups(records):
        counts = " / ".join(f"{g.by_method[m]:,}" for m in METHODS)
        lines.append(f"| {g.name} | {g.blends:,} | {counts} | {g.coverage:.1f} | {g.balance:.2f} |")
    return "\n".join(lines)


def agreement_figure(records: list[dict]) -> Figure:
    """CLIP's numbers against the readers', one point per (pair, order, ratio, method) of blends:
    means over its seeds."""
    from .agreement import MEASURES, cell_means

    figure = Figure(figsize=(11, 3.4), layout="constrained")
    axes = figure.subplots(1, len(MEASURES))
    for ax, measure in zip(axes, MEASURES):
        means = cell_means(records, measure)
        for method in METHODS:
            points = np.array([value for key, value in means.items() if key[3] == method])
            if len(points):
                ax.scatter(points[:, 0], points[:, 1], s=14, alpha=0.7, label=method.upper())
        ax.set_xlabel(f"readers' {measure}")
        ax.set_ylabel(f"CLIP's {measure}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return figure
