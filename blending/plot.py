"""Figures of :class:`~blending.BlendResult` s: the triptych, the comparison grid, the ratio strip.

Each function returns a matplotlib ``Figure`` (built without pyplot, so nothing is left open in a
global figure manager) and writes it as a PNG when ``save`` is given.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .settings import BlendResult

__all__ = ["comparison_grid", "image_array", "ratio_strip", "triptych"]

_PANEL_INCHES = 2.4


def image_array(image) -> np.ndarray:
    """An HxWx3 array of an image of any ``output_type`` but ``"latent"``."""
    if hasattr(image, "detach"):  # a "pt" image: 3 x H x W
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError("image: latents cannot be shown; call blend with output_type 'pil', 'np' or 'pt'")
        image = image.detach().float().cpu().permute(1, 2, 0).numpy()
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image must be an RGB image, got an array of shape {array.shape}")
    return array


def _figure(rows: int, columns: int) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(_PANEL_INCHES * columns, _PANEL_INCHES * rows + 0.4), layout="constrained")
    axes = np.asarray(figure.subplots(rows, columns, squeeze=False))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return figure, axes


def _show(ax, image, title: str) -> None:
    ax.imshow(image_array(image))
    ax.set_title(title, fontsize=10)


def _finish(figure: Figure, save: str | os.PathLike | None) -> Figure:
    if save is not None:
        figure.savefig(save, format="png", dpi=100)
    return figure


def _method_label(result: BlendResult, method: str) -> str:
    # SWITCH's blend is decided by its switch step (which a ratio only sets by default)
    switch_step = result.settings.get("switch_step")
    if method == "switch" and switch_step is not None:
        return f"SWITCH, switch at step {switch_step}/{result.settings['num_inference_steps']}"
    return f"{method.upper()} (ratio {result.settings.get('ratio', 0.5):g})"


def triptych(result: BlendResult, method: str | None = None, *, save: str | os.PathLike | None = None) -> Figure:
    """Prompt 1 | blend | prompt 2, as in the paper's and the authors' blog's figures.

    ``method`` defaults to the first blend of ``result``.
    """
    method = next(iter(result.blends)) if method is None else method
    if method not in result.blends:
        raise ValueError(f"method {method!r} is not among the result's blends {list(result.blends)}")
    figure, axes = _figure(1, 3)
    _show(axes[0, 0], result.prompt_1, f'"{result.settings["prompt_1"]}"')
    _show(axes[0, 1], result.blends[method], _method_label(result, method))
    _show(axes[0, 2], result.prompt_2, f'"{result.settings["prompt_2"]}"')
    return _finish(figure, save)


def comparison_grid(
    results: Sequence[BlendResult], *, row_label: str = "seed", save: str | os.PathLike | None = None
) -> Figure:
    """One row per result: prompt 1, prompt 2, then one column per method.

    Rows are labelled by the setting ``row_label``: the seed for a sweep over seeds, the ratio for
    a sweep over ratios.
    """
    if not results:
        raise ValueError("results must hold at least one BlendResult")
    methods = list(results[0].blends)
    if any(list(r.blends) != methods for r in results):
        raise ValueError("results must all hold the same methods, in the same order")
    figure, axes = _figure(len(results), 2 + len(methods))
    for row, result in zip(axes, results):
        _show(row[0], result.prompt_1, f'"{result.settings["prompt_1"]}"')
        _show(row[1], result.prompt_2, f'"{result.settings["prompt_2"]}"')
        for ax, method in zip(row[2:], methods):
            _show(ax, result.blends[method], _method_label(result, method))
        row[0].set_ylabel(f"{row_label} {result.settings.get(row_label)}", fontsize=10)
    return _finish(figure, save)


def ratio_strip(
    results: Sequence[BlendResult],
    method: str,
    *,
    parameter: str = "ratio",
    save: str | os.PathLike | None = None,
) -> Figure:
    """The blends of ``method`` over several results, left to right, one per ratio.

    ``parameter`` names the setting that varies from panel to panel, e.g. ``"switch_step"``.
    """
    if not results:
        raise ValueError("results must hold at least one BlendResult")
    if any(method not in r.blends for r in results):
        raise ValueError(f"method {method!r} must be among the blends of every result")
    figure, axes = _figure(1, len(results))
    for ax, result in zip(axes[0], results):
        _show(ax, result.blends[method], f"{parameter.replace('_', ' ')} {result.settings[parameter]:g}")
    figure.suptitle(
        f'{method.upper()}: "{results[0].settings["prompt_1"]}" \u2192 "{results[0].settings["prompt_2"]}"',
        fontsize=11,
    )
    return _finish(figure, save)
