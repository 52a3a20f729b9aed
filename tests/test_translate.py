"""Other tools' syntax as blending schedules: the page "If you know A1111, Compel or ComfyUI" states
what the tools' counting rules and blending's schedules give, step by step, for 25 steps."""

import math
from pathlib import Path

import pytest
from diffusers import DPMSolverMultistepScheduler, UniPCMultistepScheduler

from blending.methods import METHODS, CrossAttentionLayout
from blending.testing.components import architecture
from blending.translate import a1111_alternate_weights, a1111_switch_step, comfyui_switch_step

PAGE = (Path(__file__).resolve().parents[1] / "book" / "other-tools.md").read_text()
STEPS = 25
LAYOUT = CrossAttentionLayout(names=("down", "mid", "up"), num_encoder_layers=2)  # unused by these methods


def digits(weights) -> str:
    """A schedule as the page writes it: 1 for prompt 1, 2 for prompt 2, at each step."""
    assert set(weights) <= {0.0, 1.0}
    return "".join("2" if w else "1" for w in weights)


def ours(method: str, **kwargs) -> str:
    return digits(METHODS[method](0.5, STEPS, LAYOUT, kwargs.get("switch_step")).step_weights)


# -- AUTOMATIC1111, simulated from its source: collect_steps, at_step, reconstruct_cond_batch ----


def a1111_schedule(ends_and_prompts: list[tuple[int, str]], steps: int) -> str:
    """The denoiser's lookup: at call ``current`` (counted from 0), the first entry whose end is >= it."""
    return "".join(next(prompt for end, prompt in ends_and_prompts if current <= end) for current in range(steps))


def a1111_editing(when: str, steps: int) -> str:
    """``[1:2:when]`` in web UI 1.6+."""
    value = float(when) * (steps if "." in when else 1)
    k = min(steps, int(value))
    ends = sorted({steps} | ({k} if k >= 1 else set()))
    return a1111_schedule([(end, "1" if end <= k else "2") for end in ends], steps)


def a1111_alternation(steps: int) -> str:
    """``[1|2]``: one entry per step counted from 1, prompt ``args[(step - 1) % 2]``."""
    return a1111_schedule([(end, "12"[(end - 1) % 2]) for end in range(1, steps + 1)], steps)


@pytest.mark.parametrize("steps", [1, 2, 10, 25, 30])
def test_a1111_switch_step_gives_a1111s_schedule(steps):
    for when in ["0", "1", "2", "3", "12", "24", "25", "40", "0.02", "0.25", "0.5", "0.99", "1.0", ".5"]:
        assert ours_at(steps, a1111_switch_step(when, steps)) == a1111_editing(when, steps), (when, steps)


def ours_at(steps: int, switch_step: int) -> str:
    return digits(METHODS["switch"](0.5, steps, LAYOUT, switch_step).step_weights)


def test_a1111_counts_k_plus_one_steps_of_prompt_1_and_truncates():
    assert a1111_switch_step("12", 25) == 13
    assert a1111_switch_step("0.5", 25) == 13  # int(12.5) + 1, where blending's ratio 0.5 gives round(12.5) = 12
    assert a1111_switch_step("0", 25) == 0 and a1111_switch_step("0.02", 25) == 0  # nothing scheduled
    with pytest.raises(ValueError, match="when"):
        a1111_switch_step("half", 25)
    with pytest.raises(ValueError, match="when"):
        a1111_switch_step(0.5, 25)


def test_a1111_alternation_is_alternate_a_step_apart():
    assert digits(a1111_alternate_weights(STEPS)) == a1111_alternation(STEPS)
    theirs, mine = a1111_alternation(STEPS), ours("alternate")
    assert theirs[0] == mine[0] and all(a != b for a, b in zip(theirs[1:], mine[1:]))


def test_the_page_states_the_a1111_schedules():
    for when in ("12", "0.5", "0.25"):
        switch_step = a1111_switch_step(when, STEPS)
        assert a1111_editing(when, STEPS) == ours("switch", switch_step=switch_step)
        row = (
            f'| `[lion:cat:{when}]` | `{a1111_editing(when, STEPS)}` | `blend(pipe, "lion", "cat", ["switch"], '
            f"switch_step={switch_step})` | `{ours('switch', switch_step=switch_step)}` |"
        )
        assert row in PAGE, row
    row = f'| `[lion\\|cat]` | `{a1111_alternation(STEPS)}` | `blend(pipe, "lion", "cat", ["alternate"])` | `{ours("alternate")}` |'
    assert row in PAGE, row


# -- Compel and ComfyUI's ConditioningAverage: TEXTUAL ----------------------------------------


@pytest.mark.parametrize(("weights", "ratio"), [((0.5, 0.5), 0.5), ((0.75, 0.25), 0.25)])
def test_the_page_states_compels_blend_as_textual(weights, ratio):
    assert math.isclose(weights[1] / sum(weights), ratio)  # Compel normalises the weights
    assert METHODS["textual"](ratio, STEPS, LAYOUT).step_weights == (ratio,) * STEPS
    row = (
        f'| `("lion", "cat").blend({weights[0]}, {weights[1]})` | weight of cat `{ratio}` | '
        f'`blend(pipe, "lion", "cat", ["textual"], ratio={ratio})` |'
    )
    assert row in PAGE, row


def test_the_page_states_comfyuis_average_as_textual():
    strength = 0.5  # to * strength + from * (1 - strength), with to = cat: cat's weight is the strength
    assert METHODS["textual"](strength, STEPS, LAYOUT).step_weights == (strength,) * STEPS
    assert f"conditioning_to_strength={strength})` | weight of cat `{strength}` at every step" in PAGE


# -- ComfyUI's timestep ranges: SWITCH in sigma space -------------------------------------------


def paper_unipc():
    return UniPCMultistepScheduler.from_config(architecture("sd-v1-4")["scheduler"])


def karras():
    return DPMSolverMultistepScheduler.from_config(architecture("sd-v1-4")["scheduler"], use_karras_sigmas=True)


def comfyui_schedule(scheduler, percent: float, steps: int) -> str:
    """ComfyUI's rule on the sigmas: prompt 1 while the step's sigma is above the sigma of timestep
    (1 - percent) * 999, sigmas interpolated in log space between integer timesteps as ComfyUI's
    ModelSamplingDiscrete does."""
    alphas = scheduler.alphas_cumprod.double()
    log_sigmas = (((1 - alphas) / alphas) ** 0.5).log()

    def sigma(t: float) -> float:
        t = min(max(t, 0.0), 999.0)
        low, w = math.floor(t), t - math.floor(t)
        return math.exp((1 - w) * log_sigmas[low] + w * log_sigmas[min(low + 1, 999)])

    scheduler.set_timesteps(steps)
    threshold = sigma((1 - percent) * 999)
    return "".join("1" if sigma(float(t)) > threshold else "2" for t in scheduler.timesteps[-steps:])


@pytest.mark.parametrize(("name", "make"), [("UniPC", paper_unipc), ("Karras", karras)])
@pytest.mark.parametrize("percent", [0.25, 0.5, 0.75])
def test_comfyui_switch_step_follows_the_sigmas(name, make, percent):
    switch_step = comfyui_switch_step(make(), STEPS, percent)
    assert ours_at(STEPS, switch_step) == comfyui_schedule(make(), percent, STEPS)


def test_the_page_states_comfyuis_timestep_ranges():
    rows = [
        (0.5, paper_unipc, "; UniPC, as the paper configures it"),
        (0.5, karras, " with DPM-Solver++ 2M, Karras sigmas"),
    ]
    rows += [(0.75, paper_unipc, " at 0.75; UniPC"), (0.75, karras, " at 0.75; DPM-Solver++ 2M, Karras sigmas")]
    steps_of_prompt_1 = []
    for percent, make, words in rows:
        switch_step = comfyui_switch_step(make(), STEPS, percent)
        steps_of_prompt_1.append(switch_step)
        row = (
            f'{words} | `{comfyui_schedule(make(), percent, STEPS)}` | `blend(pipe, "lion", "cat", ["switch"], '
            f"switch_step={switch_step})` |"
        )
        assert row in PAGE, row
    assert steps_of_prompt_1 == [13, 12, 19, 15]  # the numbers the page's prose quotes
    with pytest.raises(ValueError, match="start_percent"):
        comfyui_switch_step(paper_unipc(), STEPS, 1.5)
