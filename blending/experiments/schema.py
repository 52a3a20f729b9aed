"""The experiment file: what ``blending sweep`` runs.

An experiment (:class:`Experiment`, read by :func:`load_experiment`) is a YAML file: a model,
methods, ratios, seeds, pairs of prompts with categories, and the denoising settings. Two ship
with the package and run by name (:data:`EXPERIMENTS`): ``paper`` (every pair the authors show,
all four methods, their ten seeds) and ``toy`` (pairs of the controlled world, for the embedded
model).

A comparison (:class:`Comparison`, listed by :func:`comparisons`) is one pair, in one order, at
one ratio, for one seed: both plain images and one blend per method. Its name is made of numbers
only, so that prompts never become paths.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from ..errors import InputError
from ..methods import METHODS

__all__ = [
    "EXPERIMENTS",
    "GENERATOR_DEVICES",
    "SOURCES",
    "Comparison",
    "Experiment",
    "ExperimentError",
    "Pair",
    "comparisons",
    "experiment_from_dict",
    "load_experiment",
]

#: The experiments that ship with the package, runnable by name.
EXPERIMENTS = ("paper", "toy")

#: Experiment values of ``generator_device``; ``auto`` is cuda when the sweep runs on CUDA (the
#: paper authors' noise), else cpu.
GENERATOR_DEVICES = ("auto", "cpu", "cuda", "mps")

#: Where a pair comes from, one the paper's authors show or one this project added.
SOURCES = ("authors", "ours")

_KEYS = {
    "model",
    "methods",
    "ratios",
    "seeds",
    "both_orders",
    "num_inference_steps",
    "guidance_scale",
    "negative_prompt",
    "generator_device",
    "pairs",
}
_PAIR_KEYS = {"prompt_1", "prompt_2", "category", "source"}


class ExperimentError(InputError):
    """An experiment file, or a sweep's folder, that cannot run: the message is one line naming
    the key (the command line prints it and exits with status 2)."""


@dataclass(frozen=True)
class Pair:
    """Two prompts, their category, and ``source``: ``"authors"`` (a pair the paper's authors
    show), ``"ours"`` (one this project added) or ``None`` (not said)."""

    prompt_1: str
    prompt_2: str
    category: str = ""
    source: str | None = None


@dataclass(frozen=True)
class Experiment:
    """What a sweep runs: see the module's docstring and ``blending/experiments/*.yaml``."""

    model: str
    pairs: tuple[Pair, ...]
    methods: tuple[str, ...] = tuple(METHODS)
    ratios: tuple[float, ...] = (0.5,)
    seeds: tuple[int, ...] = (0,)
    both_orders: bool = False
    num_inference_steps: int = 25
    guidance_scale: float = 7.5
    negative_prompt: str | None = None
    generator_device: str = "cpu"

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


@dataclass(frozen=True)
class Comparison:
    """One pair, in one order, at one ratio, for one seed. ``name`` is made of numbers only."""

    name: str
    pair: int
    swapped: bool
    ratio: float
    seed: int
    prompt_1: str
    prompt_2: str
    category: str
    source: str | None = None


def _fail(key: str, problem: str):
    raise ExperimentError(f"{key}: {problem}")


def _require_number(key: str, value, low: float, high: float):
    """Fail unless ``value`` is a finite real number in ``[low, high]`` (a bool is no number)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        _fail(key, f"must be a number, got {value!r}")
    if not low <= value <= high:
        _fail(key, f"must be in [{low}, {high}], got {value!r}")


def _list(data: dict, key: str, default) -> list:
    value = data.get(key, default)
    if not isinstance(value, list) or not value:
        _fail(key, f"must be a non-empty list, got {value!r}")
    return value


def experiment_from_dict(data) -> Experiment:
    """An :class:`Experiment` from parsed YAML; :class:`ExperimentError` names the first problem."""
    from ..settings import MAX_SEED

    if not isinstance(data, dict):
        _fail("experiment", f"must be a mapping of keys to values, got {type(data).__name__}")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        _fail(unknown[0], f"unknown key; the keys are {sorted(_KEYS)}")
    if "model" not in data or not isinstance(data["model"], str) or not data["model"]:
        _fail("model", f"must be 'embedded', a Hub id or a folder, got {data.get('model')!r}")
    methods = _list(data, "methods", list(METHODS))
    for method in methods:
        if method not in METHODS:
            _fail("methods", f"unknown method {method!r}; choose from {list(METHODS)}")
    if len(set(methods)) != len(methods):
        _fail("methods", "a method is listed twice")
    ratios = _list(data, "ratios", [0.5])
    for ratio in ratios:
        _require_number("ratios", ratio, 0, 1)
    if len(set(ratios)) != len(ratios):
        _fail("ratios", "a ratio is listed twice")
    seeds = _list(data, "seeds", [0])
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            _fail("seeds", f"every seed must be an integer in [0, 2**64 - 1], got {seed!r}")
    if len(set(seeds)) != len(seeds):
        _fail("seeds", "a seed is listed twice")
    both_orders = data.get("both_orders", False)
    if not isinstance(both_orders, bool):
        _fail("both_orders", f"must be true or false, got {both_orders!r}")
    steps = data.get("num_inference_steps", 25)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        _fail("num_inference_steps", f"must be an integer >= 1, got {steps!r}")
    guidance = data.get("guidance_scale", 7.5)
    _require_number("guidance_scale", guidance, 0, math.inf)
    negative = data.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        _fail("negative_prompt", f"must be a string, got {negative!r}")
    generator_device = data.get("generator_device", "cpu")
    if generator_device not in GENERATOR_DEVICES:
        _fail("generator_device", f"must be one of {list(GENERATOR_DEVICES)}, got {generator_device!r}")
    pairs = []
    for index, pair in enumerate(_list(data, "pairs", None)):
        where = f"pairs[{index}]"
        if not isinstance(pair, dict):
            _fail(where, f"must be a mapping with prompt_1 and prompt_2, got {pair!r}")
        unknown = sorted(set(pair) - _PAIR_KEYS)
        if unknown:
            _fail(f"{where}.{unknown[0]}", f"unknown key; a pair has {sorted(_PAIR_KEYS)}")
        for key in ("prompt_1", "prompt_2"):
            if not isinstance(pair.get(key), str) or not pair[key].strip():
                _fail(f"{where}.{key}", f"must be a non-empty string, got {pair.get(key)!r}")
        category = pair.get("category", "")
        if not isinstance(category, str):
            _fail(f"{where}.category", f"must be a string, got {category!r}")
        source = pair.get("source")
        if source is not None and source not in SOURCES:
            _fail(f"{where}.source", f"must be one of {list(SOURCES)}, got {source!r}")
        pairs.append(Pair(pair["prompt_1"], pair["prompt_2"], category, source))
    seen = set()
    for index, pair in enumerate(pairs):
        if (pair.prompt_1, pair.prompt_2) in seen:
            _fail(f"pairs[{index}]", f"duplicate pair {pair.prompt_1!r} / {pair.prompt_2!r}")
        seen.add((pair.prompt_1, pair.prompt_2))
    return Experiment(
        model=data["model"],
        pairs=tuple(pairs),
        methods=tuple(methods),
        ratios=tuple(float(r) for r in ratios),
        seeds=tuple(seeds),
        both_orders=both_orders,
        num_inference_steps=steps,
        guidance_scale=float(guidance),
        negative_prompt=negative,
        generator_device=generator_device,
    )


def load_experiment(name_or_path: str | os.PathLike) -> Experiment:
    """A shipped experiment by name (:data:`EXPERIMENTS`) or a YAML file, validated."""
    import yaml

    if str(name_or_path) in EXPERIMENTS:
        text = resources.files("blending").joinpath("experiments", f"{name_or_path}.yaml").read_text()
    else:
        path = Path(name_or_path)
        if not path.is_file():
            _fail("experiment", f"no such file {str(path)!r}, and not one of {list(EXPERIMENTS)}")
        text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        _fail("experiment", f"not valid YAML ({str(error).splitlines()[0]})")
    return experiment_from_dict(data)


def comparisons(experiment: Experiment) -> list[Comparison]:
    """Every comparison of ``experiment``, pair by pair, order, ratio, then seed."""
    found = []
    for index, pair in enumerate(experiment.pairs):
        for swapped in (False, True) if experiment.both_orders else (False,):
            prompts = (pair.prompt_2, pair.prompt_1) if swapped else (pair.prompt_1, pair.prompt_2)
            for r, ratio in enumerate(experiment.ratios):
                for seed in experiment.seeds:
                    name = f"{index:04d}-{int(swapped)}-{r:02d}-{seed}"
                    found.append(Comparison(name, index, swapped, ratio, seed, *prompts, pair.category, pair.source))
    return found
