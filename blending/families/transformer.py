"""What the transformer families (SD3, FLUX) share: flow-matching timesteps and why UNET is refused."""

from __future__ import annotations

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
