"""What the transformer families (SD3, FLUX.1) share: the transformer, flow-matching shifts, and
why UNET is refused on them."""

from __future__ import annotations

import torch

from .base import Conditioning, Family

#: Why UNET is refused on a transformer, in the words of the error.
UNET_UNDEFINED = (
    "methods: 'unet' splits a U-Net's encoder (down and mid blocks) from its decoder (up blocks); "
    "{family}'s transformer has neither, so UNET is not defined on it (use textual, switch or alternate)"
)


def calculate_shift(image_seq_len: int, scheduler_config) -> float:
    """The resolution-dependent shift ``mu`` of a flow-matching schedule, as diffusers' pipelines
    compute it: linear in the number of image tokens between the scheduler's base and max shifts."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift as diffusers_shift

    return diffusers_shift(
        image_seq_len,
        scheduler_config.get("base_image_seq_len", 256),
        scheduler_config.get("max_image_seq_len", 4096),
        scheduler_config.get("base_shift", 0.5),
        scheduler_config.get("max_shift", 1.15),
    )


class TransformerFamily(Family):
    """A family whose denoising network is a text-to-image transformer (``pipe.transformer``), on
    which UNET is not defined."""

    undefined_methods = ("unet",)
    # float16 overflows in SD3's and FLUX.1's transformers; diffusers' documentation loads them in
    # bfloat16. Their flow-matching scheduler is the checkpoint's own (default_scheduler None).
    cuda_dtype = torch.bfloat16

    def network(self, pipe) -> torch.nn.Module:
        return pipe.transformer

    def unsupported(self, pipe, settings) -> str | None:
        if settings.methods is not None and any(m in self.undefined_methods for m in settings.methods):
            return UNET_UNDEFINED.format(family=self.name)
        if settings.unet_pooled != "ratio":
            return f"unet_pooled: only UNET uses it, and UNET is not defined on {self.name}"
        return None

    @staticmethod
    def text_inputs(conditioning: Conditioning, token_weights: torch.Tensor, pooled_weights: torch.Tensor) -> dict:
        """The transformer's text keywords for rows weighing prompt 2 as given (unconditional rows first)."""
        return {
            "encoder_hidden_states": conditioning.token_states(token_weights),
            "pooled_projections": conditioning.pooled(pooled_weights),
        }
