"""The controlled-world study: what each blending method takes from each prompt, measured.

For a pair of prompts that differ in shape, colour and size, every blend is read by the
attribute readers (:mod:`blending.toy.readers`) and each attribute is counted as coming from
prompt 1, from prompt 2, or from neither. Fractions come with 95% Wilson intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..methods import METHODS
from ..pipeline import blend_seeds
from .readers import Reading, read

__all__ = ["ATTRIBUTES", "Count", "attribute_of_prompt", "run_study", "wilson_interval"]

ATTRIBUTES = ("shape", "colour", "size")


@dataclass(frozen=True)
class Count:
    """How many blends of one cell took an attribute from prompt 1, from prompt 2, or neither."""

    pair: int
    swapped: bool
    method: str
    ratio: float
    attribute: str
    from_1: int
    from_2: int
    neither: int

    @property
    def total(self) -> int:
        return self.from_1 + self.from_2 + self.neither

    def fraction(self, outcome: str) -> float:
        return getattr(self, outcome) / self.total

    def interval(self, outcome: str) -> tuple[float, float]:
        return wilson_interval(getattr(self, outcome), self.total)


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95% for z = 1.96)."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def attribute_of_prompt(prompt: str) -> dict[str, str]:
    """The attributes a full prompt names: "a large red circle" -> shape, colour, size."""
    from .world import COLOURS, SHAPES, SIZES

    words = prompt.split()
    found = {
        "shape": next((w for w in words if w in SHAPES), None),
        "colour": next((w for w in words if w in COLOURS), None),
        "size": next((w for w in words if w in SIZES), None),
    }
    if None in found.values():
        raise ValueError(f"prompt must name a shape, a colour and a size, got {prompt!r}")
    return found


def _tally(readings: list[Reading], wanted_1: dict, wanted_2: dict, attribute: str) -> tuple[int, int, int]:
    values = [getattr(r, attribute) for r in readings]
    from_1 = sum(v == wanted_1[attribute] for v in values)
    from_2 = sum(v == wanted_2[attribute] for v in values)
    return from_1, from_2, len(values) - from_1 - from_2


def run_study(
    pipe,
    pairs: list[tuple[str, str]],
    seeds: list[int],
    ratios: list[float],
    swapped_ratios: list[float],
    net=None,
    num_inference_steps: int = 25,
    guidance_scale: float = 7.5,
    max_batch_size: int | None = None,
    progress=None,
) -> list[Count]:
    """Count, for every pair, method and ratio, where each attribute of the blends comes from.

    ``ratios`` are run in the pairs' order, ``swapped_ratios`` with the prompts swapped. Ratios 0
    and 1 are not blended: there every method gives exactly the plain image of prompt 1 or 2
    (an invariant the tests check), so those cells read the plain images of the same seeds,
    drawn along with the blends of the first ratio strictly between 0 and 1.

    All seeds of a (pair, order, ratio) are blended by one :func:`blending.blend_seeds` call,
    split into U-Net calls of at most ``max_batch_size`` images (None: all of them at once,
    ``len(seeds) * 6`` images, twice that many U-Net rows under guidance). ``progress``, if
    given, is updated with the number of seeds blended.
    """
    if not any(0 < r < 1 for r in ratios):
        raise ValueError(f"ratios must hold a ratio strictly between 0 and 1, got {ratios}")
    from .readers import load_readers

    net = load_readers() if net is None else net
    methods = list(METHODS)
    counts: list[Count] = []
    for pair_index, (first, second) in enumerate(pairs):
        for swapped, run_ratios in ((False, ratios), (True, swapped_ratios)):
            prompt_1, prompt_2 = (second, first) if swapped else (first, second)
            wanted_1, wanted_2 = attribute_of_prompt(prompt_1), attribute_of_prompt(prompt_2)
            blended = [r for r in run_ratios if 0 < r < 1]
            plain: dict[float, list[Reading]] = {}
            for ratio in blended:
                results = blend_seeds(
                    pipe, prompt_1, prompt_2, methods, ratio, seeds=seeds,
                    num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                    output_type="np", progress=False, max_batch_size=max_batch_size,
                )  # fmt: skip
                readings = {m: read([r.blends[m] for r in results], net) for m in methods}
                if not plain:
                    plain[0.0] = read([r.prompt_1 for r in results], net)
                    plain[1.0] = read([r.prompt_2 for r in results], net)
                if progress is not None:
                    progress.update(len(results))
                for m in methods:
                    for attribute in ATTRIBUTES:
                        counts.append(Count(pair_index, swapped, m, ratio, attribute, *_tally(readings[m], wanted_1, wanted_2, attribute)))
            for ratio in (r for r in run_ratios if r in (0, 1)):
                for m in methods:
                    for attribute in ATTRIBUTES:
                        counts.append(Count(pair_index, swapped, m, float(ratio), attribute, *_tally(plain[float(ratio)], wanted_1, wanted_2, attribute)))
    return counts
