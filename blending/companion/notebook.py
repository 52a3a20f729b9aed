"""What the companion's notebooks share: loading, provenance, figure files, animation frames.

Nothing here blends; it wraps :func:`blending.blend` and :mod:`blending.plot` for the notebooks,
so that each notebook holds only its parameters and the figures it draws.
"""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path

import numpy as np
import torch

from ..families import family_of
from ..loading import PAPER_MODEL, load_pipeline
from ..sampling import blend
from ..settings import BlendResult

__all__ = [
    "PAPER_PROMPTS",
    "TOY_PROMPTS",
    "chapter_prompts",
    "check_pictures",
    "denoising_frames",
    "distances_from_plain_images",
    "drawn_by",
    "figure",
    "glue",
    "pictures",
    "provenance",
    "start",
    "start_toy_world",
    "summary",
    "write_animation",
]

#: How to regenerate the figures with the paper's model (see the README).
REGENERATE_WITH_SD = f"make figures MODEL={PAPER_MODEL} DEVICE=cuda"
#: The paper's running example.
PAPER_PROMPTS = ("lion", "cat")
#: What a chapter blends with the embedded model, which knows its toy world and no lions or cats.
TOY_PROMPTS = ("a large red circle", "a small blue square")


def chapter_prompts(model: str, prompt_1: str | None = None, prompt_2: str | None = None) -> tuple[str, str]:
    """The prompts a chapter blends: those given, else the paper's for Stable Diffusion and a
    pair of the toy world for the embedded model (whose pictures of "lion" mean nothing)."""
    defaults = TOY_PROMPTS if model == "embedded" else PAPER_PROMPTS
    return (defaults[0] if prompt_1 is None else prompt_1, defaults[1] if prompt_2 is None else prompt_2)


def start(model: str = "embedded", device: str | None = None, dtype: str | None = None):
    """Load the pipeline a notebook draws with; ``dtype`` is a name such as ``"float16"``."""
    pipe = load_pipeline(model, device=device, dtype=None if dtype is None else getattr(torch, dtype))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def start_toy_world(model: str = "embedded", device: str | None = None, dtype: str | None = None):
    """:func:`start` for a chapter about the toy world, which only the embedded model draws.

    Such a chapter scores images with attribute readers trained on the toy world: another
    model's images would give numbers that mean nothing, so any other ``model`` is refused.
    """
    if model != "embedded":
        raise ValueError(
            f"model: this chapter measures the toy world, which only the 'embedded' model draws; got {model!r}"
        )
    return start(model, device, dtype)


def provenance(pipe, *, toy_world: bool = False, prompts: tuple[str, str] | None = None, paper_prompts: bool = False):
    """A banner that says which model drew the page's pictures, and what it blends: ``prompts``, or
    with ``paper_prompts`` the paper's own prompts (a page about the published figures).

    For the embedded model it warns that the pictures are a smoke test, not the paper's results,
    unless ``toy_world``: a page that measures the toy world itself, where its results are the point.
    """
    from IPython.display import HTML

    from ..settings import library_versions

    versions = ", ".join(f"{name} {version}" for name, version in library_versions().items())
    drawn_by = (
        f"Drawn by <code>{html.escape(pipe.name_or_path)}</code> on <code>{pipe.device}</code> "
        f"({str(pipe.unet.dtype).removeprefix('torch.')}); {html.escape(versions)}."
    )
    if toy_world:
        if pipe.name_or_path != "embedded":
            raise ValueError(f"toy_world: only the embedded model draws the toy world, not {pipe.name_or_path!r}")
        return HTML(
            '<div class="admonition note"><p class="admonition-title">Measured in the toy world</p>'
            f"<p>{drawn_by} The numbers on this page are measured results about the toy world of "
            "coloured shapes that the embedded model was trained on, not about Stable Diffusion.</p></div>"
        )
    blended = ""
    if prompts is not None:
        blended = f" It blends <code>{html.escape(prompts[0])}</code> and <code>{html.escape(prompts[1])}</code>"
        if pipe.name_or_path == "embedded" and tuple(prompts) == TOY_PROMPTS:
            blended += (
                f", a pair of its toy world, in place of the paper's <code>{PAPER_PROMPTS[0]}</code> and "
                f"<code>{PAPER_PROMPTS[1]}</code>, which it does not know"
            )
        elif pipe.name_or_path == "embedded" and tuple(prompts) == PAPER_PROMPTS:
            blended += ", the paper's prompts, which it does not know: its pictures of them mean nothing"
        blended += " (the parameters cell sets them)."
    elif paper_prompts:
        blended = " This page blends the paper's own prompts"
        blended += (
            ", which the embedded model does not know: its pictures of them mean nothing."
            if pipe.name_or_path == "embedded"
            else "."
        )
    if pipe.name_or_path == "embedded":
        return HTML(
            '<div class="admonition warning"><p class="admonition-title">Smoke test, not the paper\'s results</p>'
            f"<p>{drawn_by} The pictures on this page come from the small model that ships with the "
            "package, trained on a toy world of coloured shapes (see <em>A controlled world</em>), so "
            f"that every page builds offline on a CPU.{blended} These pictures are a smoke test: they show "
            "that the machinery runs end to end, not what blending does in Stable Diffusion. To draw them with Stable Diffusion v1.4, run "
            f"<code>{REGENERATE_WITH_SD}</code> on a GPU machine (see <em>Reproducing on a GPU</em>).</p></div>"
        )
    return HTML(f'<div class="admonition note"><p class="admonition-title">Model</p><p>{drawn_by}{blended}</p></div>')


#: The MIME prefix under which MyST-NB finds a glued value that is not displayed (``myst_nb.glue``).
GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, value) -> None:
    """Record ``value`` under ``name`` for the book's prose (MyST-NB's ``{glue:text}`name```)
    without displaying it: what ``myst_nb.glue(name, value, display=False)`` writes, without
    needing MyST-NB where the chapter runs (Colab, Binder)."""
    from IPython.core.formatters import format_display_data
    from IPython.display import display

    bundle, metadata = format_display_data(value)
    metadata["scrapbook"] = {"name": name, "mime_prefix": GLUE_PREFIX}
    display({GLUE_PREFIX + mime: data for mime, data in bundle.items()}, raw=True, metadata=metadata)


def drawn_by(model: str) -> str:
    """The words that name the model that drew a figure, on the figure and in its caption: a
    figure seen on its own (or downloaded) must not pass for the paper's."""
    return "the embedded toy model, not Stable Diffusion" if model == "embedded" else model


def figure(fig, output_dir: str | Path, name: str, *, model: str | None):
    """Save a matplotlib figure as ``output_dir/name.png`` and return that PNG for display.

    ``model`` (a pipeline's ``name_or_path``) drew the pictures in it, and a corner mark under the
    figure names it (:func:`drawn_by`); ``None`` for a figure of no model's pictures (the toy
    world's own drawings).
    """
    from IPython.display import Image

    path = Path(output_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if model is not None:
        fig.text(0.995, 0.0, f"Drawn by {drawn_by(model)}", ha="right", va="top", fontsize=8, color="0.35")
    # tight: the mark sits below the figure's own area
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight", pad_inches=0.06)
    return Image(filename=str(path))


def distances_from_plain_images(results: list[BlendResult], method: str) -> list[tuple[float, float]]:
    """For each result, how far its ``method`` blend lies from prompt 1's and from prompt 2's
    plain image: the mean absolute difference of their pixels, on a [0, 1] scale."""
    from ..plot import image_array

    def scaled(image) -> np.ndarray:
        array = image_array(image).astype(np.float64)
        return array / 255 if array.max() > 1.5 else array  # PIL pictures are 0 to 255

    distances = []
    for result in results:
        blended = scaled(result.blends[method])
        distances.append(
            (
                float(np.abs(blended - scaled(result.prompt_1)).mean()),
                float(np.abs(blended - scaled(result.prompt_2)).mean()),
            )
        )
    return distances


def summary(result: BlendResult) -> str:
    """A few rounded numbers per image: deterministic text for notebook checks (nbval)."""
    from ..plot import image_array

    images = {"prompt_1": result.prompt_1, "prompt_2": result.prompt_2, **result.blends}
    lines = []
    for name, image in images.items():
        array = image_array(image)
        array = array / 255 if array.dtype == np.uint8 else array
        lines.append(f"{name:>10}: {array.shape[1]}x{array.shape[0]}, mean {array.mean():.2f}, std {array.std():.2f}")
    return "\n".join(lines)


def pictures(result: BlendResult, figure: str) -> dict:
    """A result's images named ``figure/panel`` (``panel``: prompt_1, prompt_2 or a method)."""
    images = {"prompt_1": result.prompt_1, "prompt_2": result.prompt_2, **result.blends}
    return {f"{figure}/{panel}": image for panel, image in images.items()}


def check_pictures(images: dict, chapter: str) -> str:
    """The line a chapter prints for nbval: do its pictures match their recorded fingerprints?

    The fingerprints live in ``fingerprints/<chapter>.json`` beside the notebooks; see
    :func:`blending.companion.fingerprint.match_fingerprints`.
    """
    from .fingerprint import match_fingerprints

    return match_fingerprints(images, Path("fingerprints") / f"{chapter}.json")


def denoising_frames(
    pipe, prompt_1: str, prompt_2: str, method: str, **blend_kwargs
) -> tuple[BlendResult, list[np.ndarray]]:
    """Blend once and keep, after every denoising step, the decoded latents of the blend."""
    latents_per_step = []

    def keep(pipe, step, timestep, tensors):
        latents_per_step.append(tensors["latents"][2:3].clone())  # row 2: the one blend
        return tensors

    result = blend(pipe, prompt_1, prompt_2, (method,), callback_on_step_end=keep, **blend_kwargs)
    family = family_of(pipe)  # decoded as the family decodes (SDXL: float32, latents_mean and std)
    size = (result.settings["height"], result.settings["width"])
    with torch.no_grad():
        frames = [family.decode(pipe, latents, "np", size)[0] for latents in latents_per_step]
    return result, frames


def write_animation(frames: list[np.ndarray], title: str, gif_path: str | Path, fps: int = 5, *, model: str):
    """The frames as an animation: written to ``gif_path`` and returned as HTML that plays in a
    page; under the frames, the model that drew them (:func:`drawn_by`)."""
    from IPython.display import HTML
    from matplotlib.animation import FuncAnimation, PillowWriter
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2, 3.5))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0.06, 1, 0.84))
    ax.set_axis_off()
    shown = ax.imshow(frames[0])
    heading = fig.suptitle(f"{title}, step 1/{len(frames)}", fontsize=9)
    fig.text(0.5, 0.0, f"Drawn by {drawn_by(model)}", ha="center", va="bottom", fontsize=7, color="0.35")

    def draw(i):
        shown.set_data(frames[i])
        heading.set_text(f"{title}, step {i + 1}/{len(frames)}")
        return shown, heading

    animation = FuncAnimation(fig, draw, frames=len(frames), interval=1000 // fps, blit=False)
    Path(gif_path).parent.mkdir(parents=True, exist_ok=True)
    animation.save(gif_path, writer=PillowWriter(fps=fps))
    page = animation.to_jshtml(fps=fps, default_mode="once")
    # matplotlib names the player's elements with a random id; a fixed one keeps reruns identical
    random_id = re.search(r"_anim_img([0-9a-f]{32})", page).group(1)
    page = page.replace(random_id, hashlib.sha1(str(gif_path).encode()).hexdigest()[:32])
    # the player's picture, in words: what a screen reader says
    described = html.escape(f"{title}: the picture after each denoising step. Drawn by {drawn_by(model)}.", quote=True)
    return HTML(page.replace('<img id="_anim_img', f'<img alt="{described}" id="_anim_img', 1))
