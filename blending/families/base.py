"""The seam between the denoising loop and a model family.

:func:`blending.blend` drives the scheduler and reads the schedules; everything that differs
between model families sits behind a :class:`Family`: how two prompts become conditioning, the
guided model call for a batch of rows, the initial latents and the timesteps, the decoding, and
the layer layout that UNET splits. The split follows k-diffusion's model wrappers: the sampler
calls a denoiser (:meth:`Family.denoiser`) and knows nothing of the network inside.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from ..attention import interpolate
from ..methods import CrossAttentionLayout, Schedule

__all__ = ["Conditioning", "Denoiser", "Family", "Guidance", "RowWeights"]

#: ``denoiser(latents, t, step) -> model output``: one guided evaluation for a batch of images at
#: timestep ``t``, the images weighing prompt 2 as their schedules say at denoising step ``step``.
Denoiser = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class Guidance:
    """What a family did with ``guidance_scale``: the value it used and what it means for the family.

    ``kind`` is ``"classifier-free"`` (the unconditional rows' prediction pushed towards the
    conditional one; off at 1 or below), ``"distilled"`` (FLUX.1 dev: a number the transformer
    takes as input, no unconditional rows) or ``"none"`` (FLUX.1 schnell takes no guidance).
    """

    scale: float | None
    kind: str

    @property
    def unconditional_rows(self) -> bool:
        """Whether the model call also evaluates unconditional rows (classifier-free guidance)."""
        return self.kind == "classifier-free" and self.scale is not None and self.scale > 1


@dataclass(frozen=True)
class Conditioning:
    """The encoded prompts that every batch of a call shares.

    ``embeds_1``, ``embeds_2``: the two prompts' token states (``1 x tokens x width``);
    ``unconditional``: the negative prompt's, ``None`` without classifier-free guidance.
    ``pooled_1``, ``pooled_2``, ``pooled_unconditional`` (``1 x width``): pooled text embeddings,
    for families that have them (SDXL, SD3, FLUX). ``extras``: tensors every row shares, named as
    the family's model call names them (SDXL's size and crop ``time_ids``; FLUX's ``txt_ids``).
    """

    embeds_1: torch.Tensor
    embeds_2: torch.Tensor
    unconditional: torch.Tensor | None = None
    pooled_1: torch.Tensor | None = None
    pooled_2: torch.Tensor | None = None
    pooled_unconditional: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)

    @property
    def dtype(self) -> torch.dtype:
        return self.embeds_1.dtype

    @property
    def guided(self) -> bool:
        """Whether the rows include unconditional ones (classifier-free guidance)."""
        return self.unconditional is not None

    def token_states(self, weights: torch.Tensor) -> torch.Tensor:
        """Token states of rows weighing prompt 2 by ``weights``; under guidance the unconditional
        rows come first, as in diffusers."""
        states = interpolate(self.embeds_1, self.embeds_2, weights)
        if self.guided:
            states = torch.cat([self.unconditional.expand(len(weights), -1, -1), states])
        return states

    def pooled(self, weights: torch.Tensor) -> torch.Tensor:
        """Pooled embeddings of rows weighing prompt 2 by ``weights``, unconditional rows first."""
        pooled = interpolate(self.pooled_1, self.pooled_2, weights)
        if self.guided:
            pooled = torch.cat([self.pooled_unconditional.expand(len(weights), -1), pooled])
        return pooled


class RowWeights:
    """The weight of prompt 2 for each image of a batch at each step, for token states and pooled
    embeddings, as tensors on the model's device; which steps change them is decided on the host,
    so that the loop needs no device sync."""

    def __init__(self, schedules: Sequence[Schedule], dtype: torch.dtype, device):
        token_rows = [s.step_weights for s in schedules]
        pooled_rows = [s.pooled_weights or s.step_weights for s in schedules]
        self.tokens = torch.tensor(token_rows, dtype=dtype, device=device).T
        self.pooled = torch.tensor(pooled_rows, dtype=dtype, device=device).T
        self._key = [tuple(r[k] for r in token_rows + pooled_rows) for k in range(len(token_rows[0]))]
        self._built_at: int | None = None
        self._built: dict | None = None

    def inputs_at(self, step: int, build: Callable[[torch.Tensor, torch.Tensor], dict]) -> dict:
        """``build(token_weights, pooled_weights)`` at ``step``: the model's conditioning keywords,
        built again only when a step's weights differ from the last step's."""
        if self._built_at is None or self._key[step] != self._key[self._built_at]:
            self._built = build(self.tokens[step], self.pooled[step])
        self._built_at = step
        return self._built


class Family(abc.ABC):
    """A family of pipelines, and everything the loop must not know about it."""

    #: In words, for messages and the results' settings.
    name: str
    #: The diffusers text-to-image pipeline class of the family.
    pipeline_class: str
    #: What its denoising network is called, for messages.
    network_name: str = "transformer"
    #: The methods not defined on the family's network (see :meth:`unsupported`).
    undefined_methods: tuple[str, ...] = ()

    # -- Loading (blending.load_pipeline) ---------------------------------------------------
    #: The components that hold weights, and so must come as safetensors.
    weight_components: tuple[str, ...]
    #: ``from_pretrained`` keywords that leave out what blending does not use.
    load_keywords: dict = {}
    #: The scheduler ``load_pipeline`` gives it by default; ``None``: the checkpoint's own.
    default_scheduler: str | None = None
    #: The dtype ``load_pipeline`` gives it by default on cuda.
    cuda_dtype: torch.dtype = torch.float16

    # -- Checks ------------------------------------------------------------------------------

    def check_pipeline(self, pipe) -> None:  # noqa: B027 (a family may have nothing to refuse)
        """An :class:`~blending.InputError` naming ``pipe`` for a configuration the family cannot run."""

    @abc.abstractmethod
    def guidance(self, pipe, guidance_scale: float | None) -> Guidance:
        """What ``guidance_scale`` means on ``pipe`` (``None``: the family's default); an
        :class:`~blending.InputError` naming ``guidance_scale`` for a value that makes no sense here."""

    def unsupported(self, pipe, settings) -> str | None:
        """Why ``settings`` cannot run on ``pipe``, in one line naming the setting, or ``None``."""
        return None

    @abc.abstractmethod
    def network(self, pipe) -> torch.nn.Module:
        """The denoising network: the U-Net or the transformer."""

    def default_size(self, pipe) -> tuple[int, int]:
        """The height and width the stock pipeline draws without ``height`` and ``width``."""
        size = pipe.default_sample_size * pipe.vae_scale_factor
        return size, size

    def size_multiple(self, pipe) -> int:
        """What height and width must be multiples of."""
        return pipe.vae_scale_factor

    # -- The model ---------------------------------------------------------------------------

    def layer_layout(self, pipe) -> CrossAttentionLayout | None:
        """The layers UNET splits between the prompts; ``None`` where UNET is not defined."""
        return None

    @abc.abstractmethod
    def encode(self, pipe, settings, guidance: Guidance, size: tuple[int, int], device) -> Conditioning:
        """The :class:`Conditioning` of the two prompts of ``settings``."""

    @abc.abstractmethod
    def latents_shape(self, pipe, size: tuple[int, int]) -> tuple[int, ...]:
        """The shape of one image's initial noise, as the stock pipeline's ``latents`` argument takes it."""

    @abc.abstractmethod
    def initial_latents(self, pipe, size, dtype, device, generator, latents) -> torch.Tensor:
        """One image's initial noise, drawn as the stock pipeline draws it (``latents``: given)."""

    @abc.abstractmethod
    def timesteps(self, pipe, num_inference_steps: int, size: tuple[int, int], device) -> torch.Tensor:
        """Set the scheduler's timesteps as the stock pipeline does (which also resets its state)."""

    @abc.abstractmethod
    def denoiser(
        self,
        pipe,
        conditioning: Conditioning,
        guidance: Guidance,
        schedules: Sequence[Schedule],
        layout: CrossAttentionLayout | None,
        size: tuple[int, int],
    ) -> contextlib.AbstractContextManager[Denoiser]:
        """A context in which the :data:`Denoiser` of a batch of images with ``schedules`` runs."""

    @abc.abstractmethod
    def decode(self, pipe, latents: torch.Tensor, output_type: str, size: tuple[int, int]) -> list:
        """The images of a batch of final latents, in ``output_type``; ``"latent"``: the latents."""


@contextlib.contextmanager
def no_context(value) -> Iterator:
    """A context that only gives ``value``."""
    yield value
