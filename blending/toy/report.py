"""Figures, tables and plain-words findings of the controlled-world study."""

from __future__ import annotations

import random
import numpy as np
from matplotlib.figure import Figure

from ..methods import METHODS
from .study import ATTRIBUTES, DISTINCT_SOURCES, Share
from .world import caption, render, sample_attributes

__all__ = [
    "attribute_curves", "findings", "generations_figure", "order_table", "sd_unet_skeleton", "wiring_table", "world_figure",
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
            cells = sorted((sh.ratio, sh) for sh in shares if not sh.swapped and sh.method == method and sh.attribute == attribute)
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
                texts.append("n/a" if sh is None else " / ".join(f"{100 * sh.fractions[s]:.0f}%" for s in DISTINCT_SOURCES))
            lines.append(f"| {method.upper()} | {attribute} | {texts[0]} | {texts[1]} |")
    return "\n".join(lines)


def findings(shares: list[Share], ratio: float = 0.5) -> str:
    """What the shares say at ``ratio``, in plain words (markdown)."""
    cells = _by_cell(shares)
    where = {"prompt_1": "prompt 1", "prompt_2": "prompt 2", "neither": "neither prompt"}
    sentences = []
    for method in METHODS:
        parts = []
        for attribute in ATTRIBUTES:
            sh = cells.get((False, method, ratio, attribute))
            if sh is None:
                continue
            source = max(DISTINCT_SOURCES, key=sh.fractions.get)
            low, high = sh.intervals[source]
            parts.append(f"{attribute} mostly from {where[source]} ({100 * sh.fractions[source]:.0f}%, 95% interval "
                         f"{100 * low:.0f}–{100 * high:.0f}%)")  # fmt: skip
        if not parts:
            continue
        sentences.append(f"- **{method.upper()}** takes its " + "; ".join(parts) + ".")
        forward = [cells.get((False, method, ratio, a)) for a in ATTRIBUTES]
        swapped = [cells.get((True, method, ratio, a)) for a in ATTRIBUTES]
        if all(forward) and all(swapped):
            # in the swapped order prompt 2 holds what prompt 1 held: compare the same concept
            shift = max(abs(f.fractions["prompt_1"] - s.fractions["prompt_2"]) for f, s in zip(forward, swapped))
            sentences[-1] += f" Swapping the prompts moves a concept's share by up to {100 * shift:.0f} points."
    return "\n".join(sentences)


def _layers_by_part(unet) -> dict[str, int]:
    from ..attention import cross_attention_layout

    names = cross_attention_layout(unet).names
    return {part: sum(n.startswith(part) for n in names) for part in ("down_blocks", "mid_block", "up_blocks")}


def sd_unet_skeleton():
    """Stable Diffusion v1.4's U-Net built without weights (on the meta device): its layout, no memory."""
    import json

    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    from ..loading import EMBEDDED_PATH

    config = json.loads((EMBEDDED_PATH.parent / "sd-v1-4-architecture.json").read_text())["unet"]
    with init_empty_weights():
        return UNet2DConditionModel(**config)


def wiring_table(unet) -> str:
    """A markdown table: the toy U-Net's wiring next to Stable Diffusion v1.4's, counted the same way."""
    sd = sd_unet_skeleton()
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
