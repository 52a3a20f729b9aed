"""Other tools' blending syntax as blending schedules: which call gives the same "prompt at step i".

AUTOMATIC1111's prompt editing ``[p1:p2:when]`` is SWITCH and its alternation ``[p1|p2]`` is
ALTERNATE up to one step; Compel's ``("p1", "p2").blend(1 - r, r)`` and ComfyUI's
``ConditioningAverage`` are TEXTUAL; ComfyUI's ``ConditioningSetTimestepRange`` pair is SWITCH in
sigma space. The functions here count steps the way each tool does (read from its source), so
that the book's page "If you know A1111, Compel or ComfyUI" can state, and the tests check, the
blending call that gives each schedule. Only schedules match: the tools' samplers and noise
sources differ, and so do their pixels.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["a1111_alternate_weights", "a1111_switch_step", "comfyui_switch_step"]


def _check_steps(num_inference_steps) -> None:
    if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, numbers.Integral):
        raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")


def a1111_switch_step(when: str, num_inference_steps: int) -> int:
    """SWITCH's ``switch_step`` (number of prompt-1 steps) for A1111's ``[p1:p2:when]``.

    As the AUTOMATIC1111 web UI counts since 1.6 (``modules/prompt_parser.py`` and the CFG
    denoiser's step counter): ``when`` with a decimal point is a fraction of the steps
    (``"0.5"``), without one a step number (``"12"``); either is truncated to an integer ``k``
    (``int``, not ``round``) and capped at the step count. The denoiser counts its calls from 0
    and keeps prompt 1 while the count is at most ``k``: ``k + 1`` steps of prompt 1, not ``k``.
    A ``k`` below 1 schedules nothing: prompt 2 from the first step.

    ``when`` is the text between the last colon and the bracket, as typed.
    """
    _check_steps(num_inference_steps)
    if not isinstance(when, str):
        raise ValueError(f"when must be the number as typed in the prompt, a string such as '0.5', got {when!r}")
    try:
        value = float(when)
    except ValueError:
        raise ValueError(f"when must be a number such as '12' or '0.5', got {when!r}") from None
    if "." in when:
        value *= num_inference_steps
    k = min(num_inference_steps, int(value))
    if k < 1:
        return 0
    return min(k + 1, num_inference_steps)


def a1111_alternate_weights(num_inference_steps: int) -> tuple[float, ...]:
    """Prompt 2's weight at each step under A1111's ``[p1|p2]``.

    A1111's alternation counts steps from 1 (``args[(step - 1) % 2]``) but looks them up with its
    denoiser's counter, which starts at 0 and finds step 1's entry for calls 0 and 1: prompt 1,
    prompt 1, then prompt 2 and prompt 1 in turn. blending's ALTERNATE is prompt 1 on even steps
    and prompt 2 on odd ones: the same prompts from step 2 on, a step apart (and one more step of
    prompt 1 before).
    """
    _check_steps(num_inference_steps)
    return tuple(float((max(i, 1) - 1) % 2) for i in range(num_inference_steps))


def comfyui_switch_step(scheduler, num_inference_steps: int, start_percent: float) -> int:
    """SWITCH's ``switch_step`` for ComfyUI's timestep-range switch at ``start_percent``, with
    the timesteps ``scheduler`` (a diffusers scheduler) runs for ``num_inference_steps``.

    In ComfyUI, prompt 1 conditioned through ``ConditioningSetTimestepRange(0, p)`` and prompt 2
    through ``ConditioningSetTimestepRange(p, 1)``, joined by ``ConditioningCombine``, switch where
    the sampler's sigma falls below the sigma of timestep ``(1 - p) * 999``: a fraction of the
    noise range, not of the steps. Prompt 1 thus holds for the steps whose timestep is above
    ``(1 - p) * 999``, however many that is for the schedule; with Karras sigmas, far fewer than
    ``p`` of them.
    """
    _check_steps(num_inference_steps)
    if isinstance(start_percent, bool) or not isinstance(start_percent, numbers.Real) or not 0 <= start_percent <= 1:
        raise ValueError(f"start_percent must be a number in [0, 1], got {start_percent!r}")
    scheduler.set_timesteps(num_inference_steps)
    threshold = (1 - start_percent) * 999
    timesteps = [float(t) for t in scheduler.timesteps]
    # PNDM's first step runs twice: count each step once
    timesteps = timesteps[len(timesteps) - num_inference_steps :]
    above = [t > threshold or math.isclose(start_percent, 1) for t in timesteps]
    return above.index(False) if False in above else num_inference_steps
