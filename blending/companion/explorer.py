"""An ipywidgets explorer: two prompts, a method, a ratio, a seed, and the triptych, live."""

from __future__ import annotations

import io

import ipywidgets as widgets
import torch
from IPython.display import Image

from ..methods import METHODS, default_switch_step
from ..plot import triptych
from ..sampling import blend

__all__ = ["Explorer"]

# What a press of Generate can run into and the output area explains; anything else is a bug
# and keeps its traceback.
_EXPECTED_ERRORS = (ValueError, torch.OutOfMemoryError)


class Explorer:
    """Controls that blend with ``pipe`` on each press of Generate and show the triptych.

    ``Explorer(pipe).widget`` is the whole interface; :meth:`generate` is what the button does.
    ``max_batch_size`` is passed to :func:`blending.blend`. The switch step follows the ratio
    until it is moved by hand; from then on it keeps the value set.
    """

    def __init__(
        self,
        pipe,
        prompt_1: str = "lion",
        prompt_2: str = "cat",
        method: str = "switch",
        ratio: float = 0.5,
        seed: int = 21,
        num_inference_steps: int = 25,
        max_batch_size: int | None = None,
    ):
        self.pipe = pipe
        self.num_inference_steps = num_inference_steps
        self.max_batch_size = max_batch_size
        self.prompt_1 = widgets.Text(value=prompt_1, description="Prompt 1")
        self.prompt_2 = widgets.Text(value=prompt_2, description="Prompt 2")
        self.method = widgets.Dropdown(options=list(METHODS), value=method, description="Method")
        self.ratio = widgets.FloatSlider(value=ratio, min=0, max=1, step=0.05, description="Ratio")
        self.switch_step = widgets.IntSlider(
            value=default_switch_step(ratio, num_inference_steps),
            min=0,
            max=num_inference_steps,
            description="Switch step",
        )
        self.seed = widgets.BoundedIntText(value=seed, min=0, max=2**63 - 1, description="Seed")
        self.button = widgets.Button(description="Generate", button_style="primary")
        self.progress = widgets.IntProgress(value=0, min=0, max=num_inference_steps, description="Steps")
        self.output = widgets.Output()
        self._switch_step_set_by_hand = False
        self._following_ratio = False  # True while the explorer itself moves the switch step
        self.button.on_click(self._on_click)
        self.method.observe(self._sync_switch_step, names="value")
        self.ratio.observe(self._sync_switch_step, names="value")
        self.switch_step.observe(self._switch_step_moved, names="value")
        self._sync_switch_step()
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.prompt_1, self.prompt_2]),
                widgets.HBox([self.method, self.seed]),
                widgets.HBox([self.ratio, self.switch_step]),
                widgets.HBox([self.button, self.progress]),
                self.output,
            ]
        )
        self.result = None

    def _sync_switch_step(self, change=None) -> None:
        """Only SWITCH uses the switch step, which follows the ratio unless it was set by hand."""
        self.switch_step.disabled = self.method.value != "switch"
        if self._switch_step_set_by_hand:
            return
        self._following_ratio = True
        try:
            self.switch_step.value = default_switch_step(self.ratio.value, self.num_inference_steps)
        finally:
            self._following_ratio = False

    def _switch_step_moved(self, change) -> None:
        if not self._following_ratio:
            self._switch_step_set_by_hand = True

    def _advance(self, pipe, step, timestep, tensors):
        self.progress.value = step + 1
        return tensors

    def _show_error(self, error: Exception) -> None:
        """A short message in place of the triptych."""
        if isinstance(error, torch.OutOfMemoryError):
            message = (
                f"Out of memory on {self.pipe.device}: the blend did not fit. Free memory "
                "(close other notebooks or restart the runtime) and press Generate again."
            )
        else:
            message = str(error)
        self.output.outputs = ()
        self.output.append_stderr(f"Could not generate: {message}\n")

    def _on_click(self, button) -> None:
        try:
            self.generate()
        except _EXPECTED_ERRORS:
            pass  # generate showed it in the output area, where the button's user looks

    def generate(self):
        """Blend with the current controls and show prompt 1 | blend | prompt 2.

        If the blend fails (bad input, out of memory) the output area says why, in place of the
        triptych, and the error is raised; :attr:`result` keeps the last blend that succeeded.
        """
        method = self.method.value
        self.progress.value = 0
        self.button.disabled = True
        try:
            for name, prompt in (("Prompt 1", self.prompt_1.value), ("Prompt 2", self.prompt_2.value)):
                if not prompt.strip():
                    raise ValueError(f"{name} is empty: type a concept, such as 'lion'")
            result = blend(
                self.pipe,
                self.prompt_1.value,
                self.prompt_2.value,
                (method,),
                self.ratio.value,
                seed=self.seed.value,
                num_inference_steps=self.num_inference_steps,
                switch_step=self.switch_step.value if method == "switch" else None,
                progress=False,
                callback_on_step_end=self._advance,
                max_batch_size=self.max_batch_size,
            )
        except _EXPECTED_ERRORS as error:
            self._show_error(error)
            raise
        finally:
            self.button.disabled = False
        self.result = result
        png = io.BytesIO()
        triptych(result, method).savefig(png, format="png", dpi=100)
        self.output.outputs = ()  # replace the last triptych
        self.output.append_display_data(Image(data=png.getvalue()))
        return result
