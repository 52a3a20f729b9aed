"""A controlled world: 64x64 pictures of one object whose attributes are known.

Each picture shows one object on a plain light background. Its shape, colour and size (small or
large) are drawn independently, its position and exact size are jittered, and its caption names
some of its attributes ("a large red circle", "a red circle", "a star"). Size rather than
texture is the third attribute because an autoencoder of Stable Diffusion's factor 8 on 64x64
pictures, trained in minutes, blurs stripes and dots away; it keeps size. Rendering is vectorised numpy,
fast enough to draw training batches on the fly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

__all__ = [
    "COLOURS",
    "HELD_OUT",
    "SHAPES",
    "SIZE",
    "SIZES",
    "Attributes",
    "caption",
    "render",
    "sample_attributes",
    "sample_batch",
]

SIZE = 64
SHAPES = ("circle", "square", "triangle", "star", "cross")
COLOURS = {
    "red": (0.85, 0.12, 0.12),
    "green": (0.10, 0.65, 0.20),
    "blue": (0.12, 0.25, 0.90),
    "yellow": (0.95, 0.80, 0.05),
    "purple": (0.55, 0.15, 0.70),
}
#: Object radius ranges, as fractions of the side: far apart, so that size is never ambiguous.
SIZES = {"small": (0.17, 0.21), "large": (0.28, 0.33)}
BACKGROUND = (0.94, 0.93, 0.90)
SUPERSAMPLE = 2  # render at twice the size, then average: smooth edges

#: Attribute combinations that no training picture shows, so that prompts naming them test
#: whether the model composes what it learned rather than recalls it.
HELD_OUT = (
    ("star", "blue", "large"),
    ("circle", "yellow", "small"),
    ("triangle", "purple", "large"),
    ("square", "green", "small"),
    ("cross", "red", "large"),
)


@dataclass(frozen=True)
class Attributes:
    shape: str
    colour: str
    size: str
    centre: tuple[float, float] = (0.5, 0.5)  # in [0, 1], x then y
    radius: float | None = None  # half the object's extent as a fraction of the side; None: mid-range


def sample_attributes(rng: random.Random, held_out: bool = False) -> Attributes:
    """Independent attributes with jittered placement; ``held_out=False`` skips :data:`HELD_OUT`."""
    while True:
        shape, colour, size = rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(SIZES))
        if held_out or (shape, colour, size) not in HELD_OUT:
            break
    radius = rng.uniform(*SIZES[size])
    centre = (rng.uniform(radius + 0.04, 1 - radius - 0.04), rng.uniform(radius + 0.04, 1 - radius - 0.04))
    return Attributes(shape, colour, size, centre, radius)


def caption(attributes: Attributes, keep: tuple[bool, bool, bool] = (True, True, True)) -> str:
    """ "a large red circle"; ``keep`` says which of size, colour and shape to name."""
    words = [w for w, k in zip((attributes.size, attributes.colour, attributes.shape), keep) if k]
    if not keep[2]:
        words.append("object")
    article = "an" if words[0][0] in "aeiou" else "a"
    return " ".join([article, *words])


def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Inside-ness of ``shape`` at coordinates centred on the object and scaled to its radius."""
    if shape == "circle":
        return x**2 + y**2 <= 1
    if shape == "square":
        return np.maximum(abs(x), abs(y)) <= 0.85
    if shape == "triangle":
        # equilateral, pointing up, inscribed in the unit circle
        return (y <= 0.5) & (np.sqrt(3) * x - y <= 1) & (-np.sqrt(3) * x - y <= 1)
    if shape == "star":
        theta = np.arctan2(x, -y)  # 0 points up
        spike = np.abs(((theta / (2 * np.pi / 5)) % 1) - 0.5) * 2  # 1 at a point, 0 between
        return np.hypot(x, y) <= 0.45 + 0.6 * spike**2
    if shape == "cross":
        return ((abs(x) <= 0.3) & (abs(y) <= 0.95)) | ((abs(y) <= 0.3) & (abs(x) <= 0.95))
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def render(attributes: Attributes) -> np.ndarray:
    """The picture, as a 64x64x3 float32 array in [0, 1]."""
    radius = attributes.radius if attributes.radius is not None else sum(SIZES[attributes.size]) / 2
    side = SIZE * SUPERSAMPLE
    pixel = (np.arange(side) + 0.5) / side
    px, py = np.meshgrid(pixel, pixel)
    x = (px - attributes.centre[0]) / radius
    y = (py - attributes.centre[1]) / radius
    inside = _shape_mask(attributes.shape, x, y)
    image = np.where(inside[..., None], np.asarray(COLOURS[attributes.colour]), np.asarray(BACKGROUND))
    image = image.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return image.astype(np.float32)


def sample_batch(rng: random.Random, batch_size: int, drop: float = 0.3, held_out: bool = False):
    """Pictures and captions for training: each attribute is left out of a caption with
    probability ``drop`` (so partial prompts draw what they name).

    Returns ``(images, captions, attributes)`` with images as an ``N x 3 x 64 x 64`` array in
    [-1, 1].
    """
    attributes = [sample_attributes(rng, held_out) for _ in range(batch_size)]
    captions = []
    for a in attributes:
        keep = tuple(rng.random() >= drop for _ in range(3))
        captions.append(caption(a, keep))
    images = np.stack([render(a) for a in attributes]).transpose(0, 3, 1, 2) * 2 - 1
    return images.astype(np.float32), captions, attributes
