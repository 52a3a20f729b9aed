"""Automatic blend scores with CLIP: how much of each prompt a blend shows.

A :class:`ClipScorer` embeds pictures and texts with a CLIP model; :func:`clip_scores` scores
every blend of a :class:`~blending.BlendResult` against the comparison's two prompts and its two
plain images::

    from blending.scores.clip import clip_scores, load_scorer

    scorer = load_scorer("embedded")        # the toy world's CLIP, for the embedded model
    scores = clip_scores(result, scorer)    # method -> BlendScores
    scores["switch"].balance

For a comparison drawn by Stable Diffusion, score with the default scorer::

    pipe = blending.load_pipeline(blending.PAPER_MODEL)        # CompVis/stable-diffusion-v1-4
    result = blending.blend(pipe, "lion", "cat", seed=21)
    scores = clip_scores(result, load_scorer())               # openai/clip-vit-large-patch14

``openai/clip-vit-large-patch14`` is the CLIP whose text tower is Stable Diffusion v1.x's text
encoder (and the model torchmetrics' CLIP score uses by default); its processor resizes and
crops SD's 512x512 pictures to its 224x224 input. It is loaded from the local Hugging Face
cache, or downloaded once (safetensors and configuration files only, about 1.7 GB); offline and
not cached, :class:`~blending.ModelUnavailableError` says how to fetch it. ``load_scorer("openai/clip-vit-base-patch32")`` or a local folder work
the same way. The embedded CLIP knows only the toy world's words and 64x64 pictures: use it for
the embedded model's blends, not for Stable Diffusion's.

The scores, for a blend ``b`` of prompts ``p1``, ``p2`` with plain images ``x1``, ``x2``, and
``cos`` the cosine similarity of L2-normalised CLIP embeddings (see :class:`BlendScores`):

- ``text_k = 100 * max(cos(b, p_k), 0)``: the CLIP score of Hessel et al. (2021), at the scale
  of torchmetrics' ``CLIPScore`` (100) rather than the paper's 2.5;
- ``image_k = cos(b, x_k)``: image-image similarity, as TP2O's CLIP distances between a blend
  and the two original generations (Li et al.);
- ``coverage = min(text_1, text_2)`` and ``balance = 1 - |text_1 - text_2| / (text_1 + text_2)``.

References:
    Hessel, Holtzman, Forbes, Le Bras, Choi. CLIPScore: A Reference-free Evaluation Metric for
    Image Captioning. EMNLP 2021, arXiv:2104.08718.
    Zhou, Shen, Wang. FreeBlend: Advancing Concept Blending with Staged Feedback-Driven
    Interpolation Diffusion. arXiv:2502.05606 (2025).
    Li, Zhang, Yang. TP2O: Creative Text Pair-to-Object Generation using Balance
    Swap-Sampling. arXiv:2310.01819.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "CLIP_SCORE_SCALE",
    "DEFAULT_CLIP",
    "EMBEDDED_CLIP",
    "BlendScores",
    "ClipScorer",
    "clip_scores",
    "load_scorer",
]

logger = logging.getLogger(__name__)

#: The CLIP model that ships in the package, trained on the toy world (``python -m blending.toy.clip``).
EMBEDDED_CLIP = Path(__file__).parent.parent / "models" / "clip"
#: The default scorer, the CLIP whose text tower Stable Diffusion v1.x uses as its text encoder.
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
#: The scale of the text scores, ``100 * max(cos, 0)`` as in torchmetrics' ``CLIPScore`` (Hessel
#: et al. 2021 use 2.5).
CLIP_SCORE_SCALE = 100.0
# The files a CLIP checkpoint needs: configurations, tokenizer and safetensors weights, no pickles.
_CLIP_FILES = ["*.json", "*.txt", "*.safetensors"]


@dataclass(frozen=True, eq=False)
class ClipScorer:
    """A CLIP model and its processor, with cosine similarities of their L2-normalised embeddings.

    Images may be PIL images, HxWx3 arrays (uint8, or float in [0, 1]), or 3xHxW float tensors
    in [0, 1]: everything :func:`blending.blend` returns except latents. Float pictures are
    rounded to 8 bits as the pipeline does for PIL output, so a picture scores the same whichever
    way it comes; the processor then resizes and normalises them for the model. Texts longer
    than the model's window (77 tokens for OpenAI's CLIP) are cut. Embeddings are computed
    without gradients, ``batch_size`` at a time; the text embeddings are cached, so scoring many
    blends of the same prompts embeds each prompt once.
    """

    model: Any
    processor: Any
    name: str = ""
    batch_size: int = 32
    _text_cache: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return next(self.model.parameters()).device

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """N x D float32 embeddings on the CPU, unit length."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        missing = list(dict.fromkeys(t for t in texts if t not in self._text_cache))
        tokenizer = self.processor.tokenizer
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            tokens = tokenizer(
                chunk, padding=True, truncation=True, max_length=tokenizer.model_max_length, return_tensors="pt"
            )
            pooled = self.model.text_model(
                input_ids=tokens["input_ids"].to(self.device), attention_mask=tokens["attention_mask"].to(self.device)
            ).pooler_output
            embeddings = _unit(self.model.text_projection(pooled))
            self._text_cache.update(zip(chunk, embeddings.cpu()))
        if not texts:
            return torch.empty(0, self.model.config.projection_dim)
        return torch.stack([self._text_cache[t] for t in texts])

    @torch.no_grad()
    def image_embeddings(self, images) -> torch.Tensor:
        """N x D float32 embeddings on the CPU, unit length; ``images``: one image or a sequence."""
        pictures = [_as_pil(image) for image in _as_sequence(images)]
        embeddings = []
        for start in range(0, len(pictures), self.batch_size):
            pixels = self.processor.image_processor(
                images=pictures[start : start + self.batch_size], return_tensors="pt"
            )
            pooled = self.model.vision_model(
                pixel_values=pixels["pixel_values"].to(self.device, self.model.dtype)
            ).pooler_output
            embeddings.append(_unit(self.model.visual_projection(pooled)).cpu())
        if not embeddings:
            return torch.empty(0, self.model.config.projection_dim)
        return torch.cat(embeddings)

    def text_similarity(self, images, texts: Sequence[str]) -> torch.Tensor:
        """Cosine similarities, N images x M texts, in [-1, 1]."""
        return self.image_embeddings(images) @ self.text_embeddings(texts).T

    def image_similarity(self, images, others) -> torch.Tensor:
        """Cosine similarities, N images x M other images, in [-1, 1]."""
        return self.image_embeddings(images) @ self.image_embeddings(others).T


@dataclass(frozen=True)
class BlendScores:
    """The CLIP scores of one blend ``b`` of prompts ``p1``, ``p2``, with plain images ``x1``, ``x2``.

    ``cos`` is the cosine similarity of the L2-normalised CLIP embeddings of its arguments.

    - ``text_1``, ``text_2``: ``100 * max(cos(b, p_k), 0)``, the CLIP score of Hessel et al.
      (2021, CLIPScore, ``w * max(cos, 0)``) at torchmetrics' scale ``w = 100`` (the paper uses
      ``w = 2.5``): in [0, 100], higher when the blend shows more of prompt ``k``. Negative
      cosines count as 0, so that coverage and balance below are defined on non-negative scores.
    - ``image_1``, ``image_2``: ``cos(b, x_k)``, in [-1, 1], with no scaling or clamping: 1 when
      the blend is the plain image of prompt ``k``. TP2O (Li et al., arXiv:2310.01819) measures a
      blend by the same kind of CLIP image similarities to the two original generations.
    - ``coverage``: ``min(text_1, text_2)``, how much of the less-present prompt the blend shows;
      high only when both prompts are there. After FreeBlend's CLIP blending score, CLIP-BS
      (Zhou et al. 2025, arXiv:2502.05606), which scores a blend by its CLIP scores to both
      prompts together: the public FreeBlend code (github.com/WiserZhou/FreeBlend, metric.py)
      computes ``|S(b,p1) + S(b,p2) - S(x1,p1) - S(x2,p2)|`` with ``S`` CLIP's logit (``100 * |cos|``
      for OpenAI's CLIP). The minimum instead of the sum does not reward a blend that is simply
      one of its prompts.
    - ``balance``: ``1 - |text_1 - text_2| / (text_1 + text_2)``, in [0, 1]: 1 when the blend is
      as close to one prompt as to the other, 0 when it shows only one of them. After TP2O's
      balance region, which accepts blends whose CLIP distances to the two original images
      differ by at most a margin; here the difference is taken between the text scores and
      made relative to their sum, so it does not depend on the scale.

    ``balance`` is undefined when ``text_1 + text_2 == 0`` (the blend is no closer than
    orthogonal to either prompt): it is then NaN (``math.isnan``), and ``coverage`` is 0.
    """

    text_1: float
    text_2: float
    image_1: float
    image_2: float

    @property
    def coverage(self) -> float:
        """``min(text_1, text_2)``."""
        return min(self.text_1, self.text_2)

    @property
    def balance(self) -> float:
        """``1 - |text_1 - text_2| / (text_1 + text_2)``; NaN when both are 0."""
        total = self.text_1 + self.text_2
        return 1 - abs(self.text_1 - self.text_2) / total if total > 0 else math.nan

    def as_dict(self) -> dict[str, float]:
        """Every score by name, the derived ones included."""
        return {name: getattr(self, name) for name in ("text_1", "text_2", "image_1", "image_2", "coverage", "balance")}


def clip_scores(result, scorer: ClipScorer) -> dict[str, BlendScores]:
    """The :class:`BlendScores` of every blend of ``result`` (a :class:`~blending.BlendResult`), by method.

    The prompts are ``result.settings["prompt_1"]`` and ``["prompt_2"]``; the plain images are
    ``result.prompt_1`` and ``result.prompt_2``. Raises ValueError for a result of latents
    (``output_type="latent"``) or without its prompts.
    """
    settings = result.settings or {}
    if settings.get("output_type") == "latent":
        raise ValueError("clip_scores needs images, not latents: blend with output_type 'pil', 'np' or 'pt'")
    if not all(isinstance(settings.get(key), str) for key in ("prompt_1", "prompt_2")):
        raise ValueError("clip_scores needs the prompts: result.settings must hold 'prompt_1' and 'prompt_2' strings")
    methods = list(result.blends)
    images = scorer.image_embeddings([result.prompt_1, result.prompt_2, *(result.blends[m] for m in methods)])
    texts = scorer.text_embeddings([settings["prompt_1"], settings["prompt_2"]])
    plain, blends = images[:2], images[2:]
    text = (CLIP_SCORE_SCALE * (blends @ texts.T).clamp(min=0)).tolist()
    image = (blends @ plain.T).tolist()
    return {m: BlendScores(t[0], t[1], i[0], i[1]) for m, t, i in zip(methods, text, image)}


def load_scorer(model: str | os.PathLike = DEFAULT_CLIP, device: str | torch.device | None = None) -> ClipScorer:
    """A :class:`ClipScorer` for a CLIP checkpoint.

    Args:
        model: a Hugging Face repo id of a CLIP model (default: ``openai/clip-vit-large-patch14``,
            for Stable Diffusion's blends), a local folder holding a ``CLIPModel`` and its
            processor (as ``save_pretrained`` writes them), or ``"embedded"``, the package's
            small CLIP of the toy world (:data:`EMBEDDED_CLIP`), for the embedded model's blends.
        device: defaults to cuda if available, else mps, else cpu. The model runs in float32.

    A repo id loads from the local Hugging Face cache, else is downloaded (configuration,
    tokenizer and safetensors files only). Weights load from safetensors only, as in
    :func:`blending.load_pipeline`.

    Raises:
        ModelUnavailableError: for a repo id that is neither cached nor downloadable now.
        ValueError: for a checkpoint without safetensors weights.
    """
    from transformers import CLIPModel, CLIPProcessor

    from ..loading import ModelUnavailableError, check_safetensors, dtype_kwarg, resolve_device

    device, _ = resolve_device(device, torch.float32)
    name = str(model)
    if name == "embedded":
        folder = EMBEDDED_CLIP
    elif Path(name).expanduser().is_dir():
        folder = Path(name).expanduser()
    else:
        from huggingface_hub import snapshot_download

        try:
            folder = Path(snapshot_download(name, allow_patterns=_CLIP_FILES))
        except Exception as error:  # the hub client raises many types; the user needs one message
            raise ModelUnavailableError.from_download_error(
                name, error, "a local folder with a CLIPModel and its processor (save_pretrained)"
            ) from None
    check_safetensors(folder, name)
    clip = CLIPModel.from_pretrained(folder, use_safetensors=True, **dtype_kwarg("transformers", torch.float32))
    clip = clip.to(device).eval()
    processor = CLIPProcessor.from_pretrained(folder)
    logger.info("loaded the CLIP scorer %s on %s", name, device)
    return ClipScorer(clip, processor, name)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


def _as_sequence(images) -> list:
    """One image, or a sequence of them (a list, or an N x ... array or tensor), as a list."""
    from PIL import Image

    if isinstance(images, Image.Image):
        return [images]
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 3:
        return [images]
    return list(images)


def _as_pil(image):
    """An RGB PIL image from a PIL image, an HxWx3 array or a 3xHxW tensor (uint8, or float in [0, 1])."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
            image = image.permute(1, 2, 0)
        image = image.float().numpy() if image.is_floating_point() else image.numpy()
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] not in (1, 3):
        raise ValueError(
            f"images must be PIL images, HxWx3 arrays or 3xHxW tensors, got an array of shape {array.shape}"
        )
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"image arrays must be uint8, or float in [0, 1]; got {array.dtype}")
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return Image.fromarray(array)
