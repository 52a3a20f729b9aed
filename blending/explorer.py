"""An ipywidgets explorer: two prompts, a method, a ratio, a seed, and the triptych, live."""

from __future__ import annotations

import io

import ipywidgets as widgets
from IPython.display import Image

from .methods import METHODS, default_switch_step
from .pipeline import blend
from .plot import triptych

__all__ = ["Explorer"]


class Explorer:
    """Controls that blend with ``pipe`` on each press of Generate and show the triptych.

    ``Explorer(pipe).widget`` is the whole interface; :meth:`generate` is what the button does.
    """

    def __init__(self, pipe, prompt_1: str = "lion", prompt_2: str = "cat", method: str = "switch",
                 ratio: float = 0.5, seed: int = 21, num_inference_steps: int = 25):  # fmt: skip
        self.pipe = pipe
        self.num_inference_steps = num_inference_steps
        self.prompt_1 = widgets.Text(value=prompt_1, description="Prompt 1")
        self.prompt_2 = widgets.Text(value=prompt_2, description="Prompt 2")
        self.method = widgets.Dropdown(options=list(METHODS), value=method, description="Method")
        self.ratio = widgets.FloatSlider(value=ratio, min=0, max=1, step=0.05, description="Ratio")
        self.switch_step = widgets.IntSlider(
            value=default_switch_step(ratio, num_inference_steps), min=0, max=num_inference_steps, description="Switch step"
        )
        self.seed = widgets.BoundedIntText(value=seed, min=0, max=2**63 - 1, description="Seed")
        self.button = widgets.Button(description="Generate", button_style="primary")
        self.progress = widgets.IntProgress(value=0, min=0, max=num_inference_steps, description="Steps")
        self.output = widgets.Output()
        self.button.on_click(lambda _: self.generate())
        self.method.observe(self._sync_switch_step, names="value")
        self.ratio.observe(self._sync_switch_step, names="value")
        self._sync_switch_step()
        self.widget = widgets.VBox([
            widgets.HBox([self.prompt_1, self.prompt_2]),
            widgets.HBox([self.method, self.seed]),
            widgets.HBox([self.ratio, self.switch_step]),
            widgets.HBox([self.button, self.progress]),
            self.output,
        ])  # fmt: skip
        self.result = None

    def _sync_switch_step(self, change=None) -> None:
        """The switch step slider follows the ratio, and only SWITCH uses it."""
        self.switch_step.disabled = self.method.value != "switch"
        self.switch_step.value = default_switch_step(self.ratio.value, self.num_inference_steps)

    def _advance(self, pipe, step, timestep, tensors):
        self.progress.value = step + 1
        return tensors

    def generate(self):
        """Blend with the current controls and show prompt 1 | blend | prompt 2."""
        method = self.method.value
        self.progress.value = 0
        self.button.disabled = True
        try:
            self.result = blend(
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
            )
        finally:
            self.button.disabled = False
        png = io.BytesIO()
        triptych(self.result, method).savefig(png, format="png", dpi=100)
        self.output.outputs = ()  # replace the last triptych
        self.output.append_display_data(Image(data=png.getvalue()))
        return self.result
