"""``load_pipeline``: a Stable Diffusion pipeline from the Hub, a local folder, or the embedded model."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .errors import InputError

__all__ = [
    "EMBEDDED_PATH",
    "ModelUnavailableError",
    "PAPER_MODEL",
    "check_device",
    "check_safetensors",
    "dtype_kwarg",
    "load_pipeline",
    "optimize_unet",
    "resolve_device",
]

logger = logging.getLogger(__name__)

#: The model that ships inside the package, trained on the toy world (see :mod:`blending.toy`).
EMBEDDED_PATH = Path(__file__).parent / "models" / "embedded"

#: The checkpoint the paper uses.
PAPER_MODEL = "CompVis/stable-diffusion-v1-4"


class ModelUnavailableError(OSError):
    """The model is neither on this machine nor downloadable now."""

    @classmethod
    def from_download_error(cls, model: str, error: BaseException, local: str) -> ModelUnavailableError:
        """The one-line error for a Hub repo id ``model`` that ``error`` kept from downloading.

        It names the model, the local Hugging Face cache and how to fetch the model with
        ``hf download``; ``local`` says what a local folder must hold instead (e.g. "a local
        folder in diffusers layout"). Raise it ``from None``: the hub client's own chain of
        errors says no more to the user.
        """
        from huggingface_hub.constants import HF_HUB_CACHE

        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        return cls(
            f"model {model!r} is not in the local Hugging Face cache ({HF_HUB_CACHE}) and could not be "
            f"downloaded ({reason}). Fetch it once where there is network, e.g. `hf download {model}` "
            f"(then copy the cache or set HF_HOME), or pass {local}."
        )


def check_device(device: str | torch.device, name: str = "device") -> torch.device:
    """``device`` as a ``torch.device``; an :class:`~blending.InputError` naming ``name`` unless
    it is a device of this machine ("cuda" without CUDA is not, nor "mps" without MPS)."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"{name} must be a device such as 'cpu', 'cuda' or 'mps', got {device!r}") from None
    if resolved.type == "cuda":
        available = torch.cuda.is_available() and (resolved.index or 0) < torch.cuda.device_count()
    elif resolved.type == "mps":
        available = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    else:  # what a tensor cannot live on cannot hold a generator either
        try:
            torch.Generator(resolved)
            available = True
        except RuntimeError:
            available = False
    if not available:
        raise InputError(f"{name}: {device!r} is not available on this machine; 'cpu' always is")
    return resolved


def resolve_device(
    device: str | torch.device | None = None, dtype: torch.dtype | None = None
) -> tuple[torch.device, torch.dtype]:
    """The device and dtype :func:`load_pipeline` uses for these arguments.

    ``device`` defaults to cuda if available, else mps, else cpu; ``dtype`` to float16 on cuda and
    float32 elsewhere. Raises :class:`~blending.InputError` for a device this machine does not
    have, a dtype that is not a torch.dtype, or float16 on cpu.
    """
    if device is None:
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    device = check_device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    if not isinstance(dtype, torch.dtype):
        raise InputError(f"dtype must be a torch.dtype such as torch.float32, got {dtype!r}")
    if dtype == torch.float16 and device.type == "cpu":
        raise InputError("dtype: float16 is not supported on cpu; use torch.float32 (or a cuda device)")
    return device, dtype


def check_safetensors(folder: Path, model: str, component: str | None = None) -> None:
    """Refuse a weights folder without safetensors files, naming the pickled files it holds instead
    (``component``: the subfolder of ``model`` that ``folder`` is, if any).

    blending loads safetensors only, because pickled weights can run code when loaded.
    """
    if not any(folder.glob("*.safetensors")):
        found = sorted(
            p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".ckpt", ".pth", ".h5", ".msgpack")
        )
        where = f" in {component}/" if component else ""
        raise InputError(
            f"model: {model!r} has no safetensors weights{where} (found {found or 'none'}). "
            "blending loads safetensors only, because pickled weights can run code when loaded; "
            "convert the checkpoint with save_pretrained(..., safe_serialization=True)."
        )


def _family_of_folder(folder: Path, model: str):
    """The family of the pipeline that ``folder`` (a diffusers layout) declares; an ``InputError``
    naming ``model`` unless blending supports it and its weights are safetensors."""
    import json

    from .families import FAMILIES, SUPPORTED

    index = folder / "model_index.json"
    if not index.is_file():
        raise InputError(f"model: {model!r} has no model_index.json; expected a diffusers pipeline folder")
    class_name = json.loads(index.read_text()).get("_class_name")
    family = next((f for f in FAMILIES if f.pipeline_class == class_name), None)
    if family is None:
        raise InputError(f"model: {model!r} is a {class_name}; blending needs {SUPPORTED}")
    for component in family.weight_components:
        if not (folder / component).is_dir():
            raise InputError(f"model: {model!r} has no {component}/ folder; expected a diffusers {class_name} layout")
        check_safetensors(folder / component, model, component)
    return family


def _download(model: str, variant: str | None) -> Path:
    """The local snapshot of a Hub repo id: from the cache, or downloaded (safetensors only)."""
    from diffusers import DiffusionPipeline

    try:
        return Path(
            DiffusionPipeline.download(
                model, use_safetensors=True, variant=variant, safety_checker=None, feature_extractor=None
            )
        )
    except Exception as error:  # the hub client raises many types; the user needs one message
        raise ModelUnavailableError.from_download_error(model, error, "a local folder in diffusers layout") from None


def _version(version: str) -> tuple[int, ...]:
    """The leading numbers of a version string: ``"0.40.0.dev0"`` is ``(0, 40, 0)``."""
    numbers = []
    for part in version.split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


def dtype_kwarg(library: str, dtype: torch.dtype) -> dict:
    """The ``from_pretrained`` keyword for ``dtype`` in ``library`` ("diffusers" or
    "transformers"): ``dtype`` since diffusers 0.40 and transformers 5, ``torch_dtype`` before
    (the old name warns in the new versions)."""
    import importlib

    renamed_in = {"diffusers": (0, 40), "transformers": (5,)}
    if library not in renamed_in:
        raise InputError(f"library must be one of {sorted(renamed_in)}, got {library!r}")
    version = _version(importlib.import_module(library).__version__)
    return {"dtype" if version >= renamed_in[library] else "torch_dtype": dtype}


def _transformers4_components(folder: Path, dtype: torch.dtype) -> dict:
    """transformers 4 only: the components of a checkpoint saved by transformers 5 that it cannot load.

    The embedded model was saved by transformers 5: its tokenizer is a ``tokenizer.json`` alone,
    which transformers 4's ``CLIPTokenizer`` (vocab and merges files only) cannot read, so it
    loads as the equivalent ``CLIPTokenizerFast``; and its text encoder's weights are named
    without transformers 4's ``text_model.`` prefix. Empty under transformers 5, and for
    checkpoints that transformers 4 reads itself (Stable Diffusion's).
    """
    import transformers

    if _version(transformers.__version__) >= (5,):
        return {}
    components = {}
    tokenizer = folder / "tokenizer"
    if not (tokenizer / "vocab.json").is_file() and (tokenizer / "tokenizer.json").is_file():
        components["tokenizer"] = transformers.CLIPTokenizerFast.from_pretrained(tokenizer)
    from safetensors.torch import load_file

    files = sorted((folder / "text_encoder").glob("*.safetensors"))
    if len(files) == 1:
        state = load_file(files[0])
        if not any(key.startswith("text_model.") for key in state):
            config = transformers.CLIPTextConfig.from_pretrained(folder / "text_encoder")
            text_encoder = transformers.CLIPTextModel(config)
            text_encoder.load_state_dict({f"text_model.{key}": value for key, value in state.items()})
            components["text_encoder"] = text_encoder.to(dtype).eval()
    return components


def optimize_unet(pipe, channels_last: bool = False, compile: bool = False) -> None:
    """Speed options for the U-Net, for GPUs: channels-last memory format, ``torch.compile``.

    Both keep the images (to float tolerance). ``torch.compile`` pays a compilation on the first
    call and on each new batch shape; see the Performance page for measurements.
    """
    if not (channels_last or compile):
        return
    if getattr(pipe, "unet", None) is None:
        raise InputError("channels_last and compile apply to a U-Net; this pipeline has a transformer")
    if channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
    if compile:
        pipe.unet = torch.compile(pipe.unet)


def load_pipeline(
    model: str | os.PathLike = "embedded",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    scheduler: str | None = None,
    *,
    variant: str | None = None,
    channels_last: bool = False,
    compile: bool = False,
):
    """Load a Stable Diffusion 1.x/2.x, SDXL, SD3 or FLUX.1 pipeline ready for :func:`blending.blend`.

    Args:
        model: a Hugging Face repo id (the paper's is ``"CompVis/stable-diffusion-v1-4"``; SDXL
            base is ``"stabilityai/stable-diffusion-xl-base-1.0"``), a local folder in diffusers
            layout, or ``"embedded"``, the small model that ships with this package and runs
            anywhere, offline and on a CPU. Which pipeline it is comes from its
            ``model_index.json``.
        device: defaults to cuda if available, else mps, else cpu.
        dtype: defaults to float16 on cuda (bfloat16 for SD3 and FLUX.1, which overflow in
            float16) and float32 elsewhere; float16 on cpu is refused.
        scheduler: the name of a diffusers scheduler class, built from the checkpoint's scheduler
            configuration. Default: the paper's ``"UniPCMultistepScheduler"`` for SD 1.x/2.x and
            SDXL; the checkpoint's own (flow-matching) scheduler for SD3 and FLUX.1.
        variant: the weights variant to load, as in diffusers: ``"fp16"`` downloads and loads
            the half-size files where a checkpoint has them (SDXL base does: about 7 GB instead
            of 14).
        channels_last, compile: speed options for GPUs, see :func:`optimize_unet`.

    Weights load from safetensors files only, never from pickle, so a hostile checkpoint cannot
    run code on this machine; a checkpoint without them is refused. The safety checker is not
    loaded (as in the paper): images are returned as the model draws them.

    Raises:
        InputError: (a ``ValueError``) for a bad ``model`` folder, ``device``, ``dtype`` or
            ``scheduler``, a checkpoint without safetensors weights, or a pipeline other than
            SD 1.x/2.x, SDXL, SD3 and FLUX.1 text to image.
        ModelUnavailableError: for a repo id that is not cached while offline.
    """
    import diffusers
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    default_dtype = dtype is None
    device, dtype = resolve_device(device, dtype)
    scheduler_class = None
    if scheduler is not None:
        scheduler_class = getattr(diffusers, scheduler, None) if isinstance(scheduler, str) else None
        if not (isinstance(scheduler_class, type) and issubclass(scheduler_class, SchedulerMixin)):
            raise InputError(
                f"scheduler must name a diffusers scheduler class such as 'UniPCMultistepScheduler', got {scheduler!r}"
            )

    model_id = str(model)
    if model_id == "embedded":
        folder = EMBEDDED_PATH
    elif Path(model_id).expanduser().is_dir():
        folder = Path(model_id).expanduser()
    elif model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1 or "\\" in model_id:
        # a Hub id is "owner/name": this is a path, and there is nothing to download
        raise InputError(f"model: no such folder {model_id!r}")
    else:
        folder = _download(model_id, variant)
    family = _family_of_folder(folder, model_id)
    class_name = family.pipeline_class
    if default_dtype and device.type == "cuda":
        dtype = family.cuda_dtype
    if scheduler is None and family.default_scheduler is not None:
        scheduler_class = getattr(diffusers, family.default_scheduler)

    compat = _transformers4_components(folder, dtype)
    pipe = getattr(diffusers, class_name).from_pretrained(
        folder,
        **dtype_kwarg("diffusers", dtype),
        **{name: None for name in compat},  # set below: diffusers checks their classes against model_index.json
        **family.load_keywords,
        use_safetensors=True,
        variant=variant,
    )
    if compat:
        pipe.register_modules(**compat)
    if scheduler_class is not None:
        pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    pipe.register_to_config(_name_or_path=model_id)
    pipe = pipe.to(device)
    optimize_unet(pipe, channels_last=channels_last, compile=compile)
    logger.info(
        "loaded %s (%s) on %s as %s with %s", model_id, class_name, device, dtype, type(pipe.scheduler).__name__
    )
    return pipe
