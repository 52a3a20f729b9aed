"""Attribute readers: which shape, colour and size a generated picture shows.

Colour is read from the object's pixels (those far from the background), shape and size by a
small convolutional classifier trained on the world's own pictures. A reader answers ``None``
when the picture shows no object, or when it is unsure (the classifier's probability is under
:data:`CONFIDENCE`): a blend that is neither of its prompts is counted as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .world import BACKGROUND, COLOURS, SHAPES, SIZES

__all__ = ["CONFIDENCE", "READERS_PATH", "Reading", "ShapeSizeNet", "load_readers", "read", "read_colour"]

READERS_PATH = Path(__file__).resolve().parents[1] / "models" / "readers" / "model.safetensors"
#: Below this probability the classifier's answer is "neither".
CONFIDENCE = 0.6
_OBJECT_DISTANCE = 0.2  # an object pixel is at least this far (RGB, in [0, 1]) from the background
_MIN_OBJECT_PIXELS = 30


@dataclass(frozen=True)
class Reading:
    shape: str | None
    colour: str | None
    size: str | None


class ShapeSizeNet(nn.Module):
    """A small CNN with two heads: shape (5 classes) and size (2 classes)."""

    def __init__(self):
        super().__init__()

        def block(c_in, c_out):
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2)
            )

        self.features = nn.Sequential(
            block(3, 16), block(16, 32), block(32, 64), block(64, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.shape = nn.Linear(64, len(SHAPES))
        self.size = nn.Linear(64, len(SIZES))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``images``: N x 3 x 64 x 64 in [-1, 1]; returns shape and size logits."""
        features = self.features(images)
        return self.shape(features), self.size(features)


def load_readers(path: Path = READERS_PATH) -> ShapeSizeNet:
    from safetensors.torch import load_file

    net = ShapeSizeNet()
    net.load_state_dict(load_file(path))
    return net.eval()


def read_colour(image: np.ndarray) -> str | None:
    """The named colour nearest to the object's most saturated pixels; None without an object."""
    distance = np.linalg.norm(image - np.asarray(BACKGROUND), axis=-1)
    pixels = image[distance > _OBJECT_DISTANCE]
    if len(pixels) < _MIN_OBJECT_PIXELS:
        return None
    saturation = pixels.max(axis=-1) - pixels.min(axis=-1)
    core = pixels[saturation >= np.quantile(saturation, 0.5)]  # leave out the blurred rim
    mean = core.mean(axis=0)
    names = list(COLOURS)
    references = np.asarray([COLOURS[n] for n in names])
    nearest = np.linalg.norm(references - mean, axis=-1)
    return names[int(np.argmin(nearest))] if nearest.min() < 0.35 else None


@torch.no_grad()
def read(images, net: ShapeSizeNet | None = None) -> list[Reading]:
    """Read a list (or N x 64 x 64 x 3 array) of HxWx3 images with values in [0, 1]."""
    net = load_readers() if net is None else net
    array = np.stack([np.asarray(image, dtype=np.float32) for image in images])
    if array.max() > 1.5:  # uint8 pictures
        array = array / 255
    logits_shape, logits_size = net(torch.from_numpy(array).permute(0, 3, 1, 2) * 2 - 1)
    p_shape, p_size = logits_shape.softmax(-1), logits_size.softmax(-1)
    sizes = list(SIZES)
    readings = []
    for image, ps, pz in zip(array, p_shape, p_size):
        colour = read_colour(image)
        shape = SHAPES[int(ps.argmax())] if ps.max() >= CONFIDENCE and colour is not None else None
        size = sizes[int(pz.argmax())] if pz.max() >= CONFIDENCE and colour is not None else None
        readings.append(Reading(shape, colour, size))
    return readings
