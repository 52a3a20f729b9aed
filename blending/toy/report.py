"""Figures, tables and plain-words findings of the controlled-world study."""

from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure

from ..methods import METHODS
from .study import ATTRIBUTES, Count
from .world import caption, render, sample_attributes

__all__ = ["attribute_curves", "findings", "generations_figure", "merge_pairs", "order_table", "world_figure"]

_COLOURS = {"from_1": "#1f77b4", "from_2": "#d62728", "neither": "#7f7f7f"}
_LABELS = {"from_1": "from prompt 1", "from_2": "from prompt 2", "neither": "neither"}


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


def merge_pairs(counts: list[Count]) -> dict[tuple, Count]:
    """Sum the counts of all pairs: one Count per (swapped, method, ratio, attribute)."""
    merged: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    for c in counts:
        total = merged[(c.swapped, c.method, c.ratio, c.attribute)]
        total[0] += c.from_1
        total[1] += c.from_2
        total[2] += c.neither
    return {key: Count(-1, key[0], key[1], key[2], key[3], *value) for key, value in merged.items()}


def attribute_curves(counts: list[Count]) -> Figure:
    """One panel per method and attribute: where the attribute comes from, against the ratio."""
    merged = merge_pairs(counts)
    methods = list(METHODS)
    figure = Figure(figsize=(11, 2.3 * len(methods)), layout="constrained")
    axes = figure.subplots(len(methods), len(ATTRIBUTES), sharex=True, sharey=True)
    for row, method in zip(axes, methods):
        for ax, attribute in zip(row, ATTRIBUTES):
            cells = sorted((k[2], c) for k, c in merged.items() if not k[0] and k[1] == method and k[3] == attribute)
            ratios = [r for r, _ in cells]
            for outcome in ("from_1", "from_2", "neither"):
                values = np.array([c.fraction(outcome) for _, c in cells])
                low, high = np.array([c.interval(outcome) for _, c in cells]).T
                ax.plot(ratios, values, marker="o", color=_COLOURS[outcome], label=_LABELS[outcome])
                ax.fill_between(ratios, low, high, color=_COLOURS[outcome], alpha=0.15)
            ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"{method.upper()}: {attribute}", fontsize=9)
            ax.grid(alpha=0.3)
        row[0].set_ylabel("fraction of blends")
    for ax in axes[-1]:
        ax.set_xlabel("ratio (weight of prompt 2)")
    axes[0, -1].legend(fontsize=8, loc="center right")
    return figure


def order_table(counts: list[Count], ratio: float = 0.5) -> str:
    """A markdown table: at ``ratio``, each attribute's source in both prompt orders."""
    merged = merge_pairs(counts)
    lines = [
        "| method | attribute | in order: from 1 / from 2 / neither | swapped: from 1 / from 2 / neither |",
        "| --- | --- | --- | --- |",
    ]
    for method in METHODS:
        for attribute in ATTRIBUTES:
            cells = []
            for swapped in (False, True):
                c = merged.get((swapped, method, ratio, attribute))
                cells.append(
                    "n/a" if c is None else " / ".join(f"{100 * c.fraction(o):.0f}%" for o in ("from_1", "from_2", "neither"))
                )
            lines.append(f"| {method.upper()} | {attribute} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def findings(counts: list[Count], ratio: float = 0.5) -> str:
    """What the counts say at ``ratio``, in plain words (markdown)."""
    merged = merge_pairs(counts)
    sentences = []
    for method in METHODS:
        parts = []
        for attribute in ATTRIBUTES:
            c = merged.get((False, method, ratio, attribute))
            if c is None:
                continue
            source = max(("from_1", "from_2", "neither"), key=c.fraction)
            share = c.fraction(source)
            low, high = c.interval(source)
            where = {"from_1": "prompt 1", "from_2": "prompt 2", "neither": "neither prompt"}[source]
            parts.append(f"{attribute} mostly from {where} ({100 * share:.0f}%, 95% CI {100 * low:.0f}–{100 * high:.0f}%)")
        sentences.append(f"- **{method.upper()}** takes its " + "; ".join(parts) + ".")
        swapped = [merged.get((True, method, ratio, a)) for a in ATTRIBUTES]
        forward = [merged.get((False, method, ratio, a)) for a in ATTRIBUTES]
        if all(swapped) and all(forward):
            # in the swapped order prompt 2 holds what prompt 1 held: compare the same concept
            shift = max(abs(f.fraction("from_1") - s.fraction("from_2")) for f, s in zip(forward, swapped))
            sentences[-1] += f" Swapping the prompts moves a concept's share by up to {100 * shift:.0f} points."
    return "\n".join(sentences)
