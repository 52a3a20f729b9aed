"""What differs between model families, and nothing else.

:func:`blending.blend` runs one loop for every family: the schedules, the batching, the chunking
and the attention processors are shared. A :class:`Family` supplies the three things that
differ between Stable Diffusion 1.x/2.x and SDXL:

- how the two prompts become conditioning (:meth:`Family.encode`, giving a :class:`Conditioning`);
- how a batch's rows of conditioning are handed to the U-Net (:meth:`Conditioning.unet_inputs`):
  token states only, or token states plus SDXL's pooled embedding and size/crop time ids;
- how final latents become images (:meth:`Family.decode`): SDXL's VAE is decoded in float32
  when it would overflow in float16, and its watermark is applied when the pipeline has one, as
  the stock pipelines do.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch

from ..attention import interpolate
from ..errors import InputError

__all__ = ["FAMILIES", "SUPPORTED", "Conditioning", "Family", "StableDiffusion", "StableDiffusionXL", "family_of"]

#: What :func:`family_of` accepts, in the words of its error.
SUPPORTED = (
    "a StableDiffusionPipeline (Stable Diffusion 1.x/2.x) or a StableDiffusionXLPipeline (SDXL), text to image; "
    "SD3, FLUX, img2img and inpainting pipelines are not supported"
)


@dataclass(frozen=True)
class Conditioning:
    """The encoded prompts that every batch of a call shares.

    ``embeds_1``, ``embeds_2``, ``unconditional``: token states (``1 x tokens x width``) of the two
    prompts and of the negative prompt (``None`` without classifier-free guidance). SDXL only:
    ``pooled_1``, ``pooled_2``, ``pooled_unconditional`` (``1 x width``), the pooled embeddings,
    and ``time_ids`` (``1 x 6``), the size and crop conditioning every row shares.
    """

    embeds_1: torch.Tensor
    embeds_2: torch.Tensor
    unconditional: torch.Tensor | None
    pooled_1: torch.Tensor | None = None
    pooled_2: torch.Tensor | None = None
    pooled_unconditional: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    @property
    def guided(self) -> bool:
        return self.unconditional is not None

    def unet_inputs(self, token_weights: torch.Tensor, pooled_weights: torch.Tensor) -> dict:
        """The U-Net's conditioning keywords for a batch whose conditional rows weigh prompt 2 by
        ``token_weights`` (token states) and ``pooled_weights`` (pooled embedding, SDXL only);
        under guidance the unconditional rows come first, as in diffusers."""
        rows = len(token_weights)
        states = interpolate(self.embeds_1, self.embeds_2, token_weights)
        if self.guided:
            states = torch.cat([self.unconditional.expand(rows, -1, -1), states])
        inputs = {"encoder_hidden_states": states}
        if self.pooled_1 is not None:
            pooled = interpolate(self.pooled_1, self.pooled_2, pooled_weights)
            if self.guided:
                pooled = torch.cat([self.pooled_unconditional.expand(rows, -1), pooled])
            inputs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": self.time_ids.expand(len(pooled), -1)}
        return inputs


class Family(abc.ABC):
    """A family of pipelines: its pipeline class and U-Net, how it encodes and decodes."""

    #: In words, for messages.
    name: str
    #: The diffusers text-to-image pipeline class of the family.
    pipeline_class: str
    #: The U-Net's ``addition_embed_type`` the family needs.
    addition_embed_type: str | None
    #: Whether the conditioning has a pooled embedding besides the token states.
    has_pooled_embedding: bool

    @abc.abstractmethod
    def encode(self, pipe, prompts: tuple[str, str], negative_prompt: str | None, device, guided: bool, size):
        """The :class:`Conditioning` of ``prompts`` (``size``: the images' height and width)."""

    @abc.abstractmethod
    def decode(self, pipe, latents: torch.Tensor, output_type: str) -> list:
        """The images of a batch of final latents, in ``output_type``."""


class StableDiffusion(Family):
    """Stable Diffusion 1.x/2.x: one CLIP text encoder, token states only."""

    name = "Stable Diffusion 1.x/2.x"
    pipeline_class = "StableDiffusionPipeline"
    addition_embed_type = None
    has_pooled_embedding = False

    def encode(self, pipe, prompts: tuple[str, str], negative_prompt: str | None, device, guided: bool, size):
        negative = None if negative_prompt is None else [negative_prompt] * 2
        embeds, negative_embeds = pipe.encode_prompt(list(prompts), device, 1, guided, negative)
        return Conditioning(embeds[:1], embeds[1:], negative_embeds[:1] if guided else None)

    def decode(self, pipe, latents: torch.Tensor, output_type: str) -> list:
        if output_type == "latent":
            return list(latents)
        decoded = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
        return list(
            pipe.image_processor.postprocess(decoded, output_type=output_type, do_denormalize=[True] * len(latents))
        )


class StableDiffusionXL(Family):
    """SDXL: two text encoders, whose token states are concatenated; the second one's pooled
    embedding and six size/crop numbers enter the U-Net through its time embedding."""

    name = "SDXL"
    pipeline_class = "StableDiffusionXLPipeline"
    addition_embed_type = "text_time"
    has_pooled_embedding = True

    def encode(self, pipe, prompts: tuple[str, str], negative_prompt: str | None, device, guided: bool, size):
        negative = None if negative_prompt is None else [negative_prompt] * 2
        embeds, negative_embeds, pooled, negative_pooled = pipe.encode_prompt(
            prompt=list(prompts),
            device=device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=guided,
            negative_prompt=negative,
        )
        # stock SDXL's defaults: original_size = target_size = the image size, no crop
        projection_dim = (
            int(pooled.shape[-1]) if pipe.text_encoder_2 is None else pipe.text_encoder_2.config.projection_dim
        )
        time_ids = pipe._get_add_time_ids(
            tuple(size), (0, 0), tuple(size), dtype=embeds.dtype, text_encoder_projection_dim=projection_dim
        )
        return Conditioning(
            embeds[:1],
            embeds[1:],
            negative_embeds[:1] if guided else None,
            pooled[:1],
            pooled[1:],
            negative_pooled[:1] if guided else None,
            time_ids.to(device),
        )

    def decode(self, pipe, latents: torch.Tensor, output_type: str) -> list:
        if output_type == "latent":
            return list(latents)
        vae = pipe.vae
        # SDXL's VAE overflows in float16: decode in float32, as StableDiffusionXLPipeline does
        upcast = vae.dtype == torch.float16 and vae.config.force_upcast
        if upcast:
            vae.to(torch.float32)
        try:
            latents = latents.to(vae.dtype)
            mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
            if mean is not None and std is not None:
                shape = (1, len(mean), 1, 1)
                mean = torch.tensor(mean).view(shape).to(latents)
                std = torch.tensor(std).view(shape).to(latents)
                latents = latents * std / vae.config.scaling_factor + mean
            else:
                latents = latents / vae.config.scaling_factor
            decoded = vae.decode(latents, return_dict=False)[0]
        finally:
            if upcast:
                vae.to(torch.float16)
        if getattr(pipe, "watermark", None) is not None:
            decoded = pipe.watermark.apply_watermark(decoded)
        return list(pipe.image_processor.postprocess(decoded, output_type=output_type))


#: The families :func:`blending.blend` runs.
FAMILIES: tuple[Family, ...] = (StableDiffusion(), StableDiffusionXL())


def family_of(pipe) -> Family:
    """The family of ``pipe``; an :class:`~blending.InputError` naming ``pipe`` and what is supported otherwise."""
    import diffusers

    for family in FAMILIES:
        if isinstance(pipe, getattr(diffusers, family.pipeline_class)):
            return family
    raise InputError(f"pipe must be {SUPPORTED}; got {type(pipe).__name__}")
