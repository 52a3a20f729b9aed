"""Train the embedded CLIP, the scorer of the toy world: ``python -m blending.toy.clip``.

A standard ``transformers.CLIPModel`` at toy size, trained contrastively on the world's pictures
and captions, so that :func:`blending.scores.clip.clip_scores` runs offline on the embedded model's
blends. Stages, resumable from the checkpoint in ``--work``:

1. render the training pictures (fixed seed; the :data:`~blending.toy.world.HELD_OUT`
   combinations are never drawn, as for the embedded model);
2. train: each step draws a batch of pictures, lightly augmented so that the model transfers to
   generated pictures (the embedded model's are slightly soft: a Gaussian blur of random width,
   a little pixel noise and a small colour shift), and captions naming all three attributes or,
   with probability ``--drop`` per attribute, fewer ("a red circle"; the partial captions teach
   each attribute on its own, which is what lets the model name held-out combinations). The
   loss is the symmetric InfoNCE of CLIP (Radford et al. 2021) with CLIP's learned temperature,
   except that a picture's positives are every caption of the batch that describes it, not only
   its own: a batch holds many pictures of one combination, and "a red object" describes them
   all. A penalty on negative image-text cosines (``--cone``) keeps the embeddings in a cone, as
   OpenAI's CLIP's are: without it, a caption that shares one attribute with a picture has a
   negative cosine, which the CLIP score (``max(cos, 0)``) reads as 0, as if it shared none;
3. write the model and its processor (safetensors) and measure, on fresh pictures (another
   seed, held-out combinations included), the zero-shot accuracy: the right caption among all 50
   full captions ("a large red circle"), overall, per attribute, and on the held-out
   combinations alone; and the mean CLIP score of a picture and a full caption by how many
   attributes they share.

The defaults take about 10 minutes on one CPU thread and write the package's embedded CLIP,
``blending/models/clip/``, with ``training_metrics.json`` recording how it was made.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import random
import sys
import time
from itertools import product
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import portable
from .model import build_tokenizer
from .world import COLOURS, HELD_OUT, SHAPES, SIZES, Attributes, caption, render, sample_attributes

__all__ = [
    "ATTRIBUTES",
    "FULL_CAPTIONS",
    "build_clip",
    "build_processor",
    "main",
    "render_dataset",
    "text_score_by_shared_attributes",
    "zero_shot_accuracy",
]

logger = logging.getLogger(__name__)

#: The attributes in caption order, with their values.
ATTRIBUTES = {"size": tuple(SIZES), "colour": tuple(COLOURS), "shape": SHAPES}
#: Every full caption of the world, with its (shape, colour, size): the 50 classes of the
#: zero-shot test.
FULL_CAPTIONS = tuple(
    (caption(Attributes(shape, colour, size)), (shape, colour, size))
    for shape, colour, size in product(SHAPES, COLOURS, SIZES)
)
WIDTH = 64
PROJECTION = 64
IMAGE_SIZE = 64
PATCH = 8
# OpenAI CLIP's pixel normalisation, kept so that the processor is a stock CLIPImageProcessor
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def build_clip(tokenizer, vision_layers: int = 3, text_layers: int = 2, width: int = WIDTH, mlp: int = 4):
    """A CLIP of ``width`` with a ViT of patch 8 on 64x64 pictures (64 patches) and a text tower
    over ``tokenizer``'s vocabulary and window; both project to :data:`PROJECTION` dimensions."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    text = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=mlp * width,
        num_hidden_layers=text_layers,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        projection_dim=PROJECTION,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = CLIPVisionConfig(
        hidden_size=width,
        intermediate_size=mlp * width,
        num_hidden_layers=vision_layers,
        num_attention_heads=4,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        projection_dim=PROJECTION,
    )
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=PROJECTION)
    return CLIPModel(config)


def build_processor(tokenizer):
    """The CLIP processor: ``tokenizer`` and a ``CLIPImageProcessor`` for 64x64 pictures."""
    from transformers import CLIPProcessor

    try:  # transformers 5: the PIL-based class (its CLIPImageProcessor wants torchvision, else warns)
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # transformers 4: the PIL-based processor is CLIPImageProcessor itself
        from transformers import CLIPImageProcessor as ImageProcessor
    image_processor = ImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=list(MEAN),
        image_std=list(STD),
    )
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


# -- data ---------------------------------------------------------------------------------------


def render_dataset(count: int, seed: int, held_out: bool = False) -> dict[str, np.ndarray]:
    """``count`` pictures (uint8, N x 64 x 64 x 3) with their attribute indices (N x 3: size,
    colour, shape, as in :data:`ATTRIBUTES`); no held-out combination unless ``held_out``."""
    rng = random.Random(seed)
    attributes = [sample_attributes(rng, held_out) for _ in range(count)]
    return {
        "images": np.stack([(render(a) * 255).round().astype(np.uint8) for a in attributes]),
        "labels": np.array([[ATTRIBUTES[k].index(getattr(a, k)) for k in ATTRIBUTES] for a in attributes]),
    }


def _held_out_dataset(per_combination: int, seed: int) -> dict[str, np.ndarray]:
    """Pictures of the held-out combinations only, ``per_combination`` of each."""
    rng = random.Random(seed)
    attributes = []
    for shape, colour, size in HELD_OUT:
        for _ in range(per_combination):
            radius = rng.uniform(*SIZES[size])
            centre = tuple(rng.uniform(radius + 0.04, 1 - radius - 0.04) for _ in range(2))
            attributes.append(Attributes(shape, colour, size, centre, radius))
    return {
        "images": np.stack([(render(a) * 255).round().astype(np.uint8) for a in attributes]),
        "labels": np.array([[ATTRIBUTES[k].index(getattr(a, k)) for k in ATTRIBUTES] for a in attributes]),
    }


def _normalise(images: torch.Tensor) -> torch.Tensor:
    """N x 3 x H x W in [0, 1] to the model's input, as the processor normalises."""
    return (images - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def _augment(images: torch.Tensor, generator: torch.Generator, blur: float, noise: float, shift: float) -> torch.Tensor:
    """A Gaussian blur of standard deviation uniform in [0, ``blur``] pixels, Gaussian noise of
    standard deviation uniform in [0, ``noise``], and a colour shift uniform in +-``shift`` per
    channel; one draw per picture. ``images``: N x 3 x H x W in [0, 1]."""
    n = len(images)
    sigma = torch.rand(n, generator=generator) * blur + 1e-3
    taps = torch.arange(-2, 3, dtype=torch.float32)
    kernel = torch.exp(-(taps[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(3, 0)  # (n * 3) x 5
    x = images.reshape(1, n * 3, *images.shape[2:])
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=n * 3)
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), kernel[:, None, :, None], groups=n * 3)
    x = x.reshape(images.shape)
    x = x + torch.rand(n, 1, 1, 1, generator=generator) * noise * torch.randn(x.shape, generator=generator)
    x = x + (torch.rand(n, 3, 1, 1, generator=generator) * 2 - 1) * shift
    return x.clamp(0, 1)


def _captions(labels: np.ndarray, keep: np.ndarray) -> list[str]:
    names = list(ATTRIBUTES)
    texts = []
    for label, k in zip(labels, keep):
        words = {name: ATTRIBUTES[name][i] for name, i in zip(names, label)}
        texts.append(caption(Attributes(words["shape"], words["colour"], words["size"]), tuple(bool(b) for b in k)))
    return texts


def _features(model, pixel_values=None, input_ids=None) -> torch.Tensor:
    """L2-normalised projected embeddings (the same calls under transformers 4 and 5)."""
    if pixel_values is not None:
        pooled = model.vision_model(pixel_values=pixel_values).pooler_output
        return F.normalize(model.visual_projection(pooled), dim=-1)
    pooled = model.text_model(input_ids=input_ids).pooler_output
    return F.normalize(model.text_projection(pooled), dim=-1)


def contrastive_loss(image_embeds, text_embeds, logit_scale, positives: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with several positives: ``positives[i, j]`` says that caption ``j``
    describes picture ``i``; each direction's target spreads evenly over the positives."""
    logits = logit_scale.exp() * image_embeds @ text_embeds.T
    targets = positives.float()
    image_to_text = -(targets / targets.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    text_to_image = -(targets / targets.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return (image_to_text + text_to_image) / 2


# -- measuring ----------------------------------------------------------------------------------


@torch.no_grad()
def _full_caption_cosines(model, processor, images: np.ndarray, batch_size: int = 250) -> torch.Tensor:
    """Cosines of uint8 pictures (N x 64 x 64 x 3) with each of :data:`FULL_CAPTIONS`, N x 50.

    The pictures and captions go through ``processor`` as a user's would (its tokenizer, and its
    resizing and normalisation of uint8 pictures)."""
    from PIL import Image

    model.eval()
    ids = processor.tokenizer(
        [text for text, _ in FULL_CAPTIONS],
        padding="max_length",
        max_length=processor.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    text_embeds = _features(model, input_ids=ids)
    cosines = []
    for start in range(0, len(images), batch_size):
        pixels = processor(
            images=[Image.fromarray(image) for image in images[start : start + batch_size]], return_tensors="pt"
        )["pixel_values"]
        cosines.append(_features(model, pixel_values=pixels) @ text_embeds.T)
    return torch.cat(cosines)


def _named(data: dict[str, np.ndarray]) -> list[dict[str, str]]:
    return [{name: ATTRIBUTES[name][i] for name, i in zip(ATTRIBUTES, label)} for label in data["labels"]]


_CAPTION_ATTRIBUTES = [dict(zip(("shape", "colour", "size"), named)) for _, named in FULL_CAPTIONS]


def zero_shot_accuracy(model, processor, data: dict[str, np.ndarray]) -> dict[str, float]:
    """How often the right full caption scores highest among all of :data:`FULL_CAPTIONS`.

    ``data``: pictures and labels as :func:`render_dataset` gives them. Returns the share of
    pictures whose best caption is right (``overall``), and whose best caption names the right
    ``shape``, ``colour`` and ``size``, with their ``count``.
    """
    guesses = [
        _CAPTION_ATTRIBUTES[k] for k in _full_caption_cosines(model, processor, data["images"]).argmax(1).tolist()
    ]
    truths = _named(data)
    result = {"overall": float(np.mean([guess == truth for guess, truth in zip(guesses, truths)]))}
    for name in ("shape", "colour", "size"):
        result[name] = float(np.mean([guess[name] == truth[name] for guess, truth in zip(guesses, truths)]))
    result["count"] = len(truths)
    return result


def text_score_by_shared_attributes(model, processor, data: dict[str, np.ndarray]) -> dict[str, float]:
    """The mean CLIP score, ``100 * max(cos, 0)`` as :mod:`blending.scores.clip` reports it, of a picture
    and a full caption, by how many attributes (0 to 3) the caption shares with the picture."""
    scores = 100 * _full_caption_cosines(model, processor, data["images"]).clamp(min=0)
    shared = torch.tensor(
        [[sum(truth[k] == caption[k] for k in caption) for caption in _CAPTION_ATTRIBUTES] for truth in _named(data)]
    )
    return {str(k): round(scores[shared == k].mean().item(), 2) for k in range(4)}


# -- training -----------------------------------------------------------------------------------


def _train(model, tokenizer, data, args, work: Path) -> tuple[int, float]:
    """Train ``model`` for ``args.steps`` steps; resumable. Returns the steps run and the seconds
    all runs of this training took together."""
    checkpoint = work / "clip.pt"
    decay, other = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "embedding" not in name else other).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": other, "weight_decay": 0.0}], lr=args.lr
    )
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: float(min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))),
    )
    generator = torch.Generator().manual_seed(args.seed)
    start, seconds = 0, 0.0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        start, seconds = state["step"], state["seconds"]
        logger.info("clip: resuming at step %d of %d", start, args.steps)

    images = torch.from_numpy(data["images"]).permute(0, 3, 1, 2)  # uint8
    labels = torch.from_numpy(data["labels"])
    began = time.perf_counter()
    model.train()
    running = None
    for step in range(start, args.steps):
        indices = torch.randint(0, len(images), (args.batch_size,), generator=generator)
        x = _augment(images[indices].float() / 255, generator, args.blur, args.noise, args.colour_shift)
        keep = torch.rand(args.batch_size, 3, generator=generator) >= args.drop
        batch_labels = labels[indices]
        ids = tokenizer(
            _captions(batch_labels.numpy(), keep.numpy()),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        # caption j describes picture i when every attribute it names is picture i's
        agree = batch_labels[:, None, :] == batch_labels[None, :, :]  # i x j x attribute
        positives = (agree | ~keep[None, :, :]).all(-1)
        image_embeds, text_embeds = _features(model, pixel_values=_normalise(x)), _features(model, input_ids=ids)
        loss = contrastive_loss(image_embeds, text_embeds, model.logit_scale, positives)
        if args.cone:
            loss = loss + args.cone * F.relu(-(image_embeds @ text_embeds.T)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))  # as CLIP: the temperature is at least 0.01
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if (step + 1) % 100 == 0 or step + 1 == args.steps:
            logger.info(
                "clip: step %d of %d, loss %.4f, temperature %.4f",
                step + 1,
                args.steps,
                running,
                1 / model.logit_scale.exp().item(),
            )
        if (step + 1) % 250 == 0 or step + 1 == args.steps:
            elapsed = seconds + time.perf_counter() - began
            torch.save(
                {
                    "step": step + 1,
                    "seconds": elapsed,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "generator": generator.get_state(),
                },
                checkpoint,
            )
    model.eval()
    return args.steps, seconds + time.perf_counter() - began


def _name_image_processor(path: Path, name: str) -> None:
    """Record the image processor's own class: transformers 5 writes ``CLIPImageProcessor`` for
    its PIL-based ``CLIPImageProcessorPil`` too, and then, without torchvision, warns on every
    load that it falls back to it. Transformers 4 ignores the name."""
    config = json.loads(path.read_text())
    config["image_processor_type"] = name
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    import transformers

    from ..scores.clip import EMBEDDED_CLIP

    parser = argparse.ArgumentParser(prog="python -m blending.toy.clip", description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(".toy-clip"), help="checkpoints and data (resumable)")
    parser.add_argument("--out", type=Path, default=EMBEDDED_CLIP, help="where the model and its processor go")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=20000, help="training pictures, rendered once")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--drop", type=float, default=0.4, help="probability that a caption leaves out an attribute")
    parser.add_argument("--blur", type=float, default=1.0, help="largest blur (pixels, standard deviation)")
    parser.add_argument("--noise", type=float, default=0.04, help="largest pixel noise (standard deviation)")
    parser.add_argument("--colour-shift", type=float, default=0.04, help="largest colour shift per channel")
    parser.add_argument(
        "--cone", type=float, default=1.0, help="weight of the penalty on negative image-text cosines (0: none)"
    )
    parser.add_argument("--vision-layers", type=int, default=3)
    parser.add_argument("--text-layers", type=int, default=2)
    parser.add_argument("--eval-images", type=int, default=2000, help="fresh pictures for the zero-shot accuracy")
    parser.add_argument("--eval-seed", type=int, default=4242)
    parser.add_argument("--eval-held-out", type=int, default=200, help="fresh pictures of each held-out combination")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.eval_seed == args.seed:
        parser.error("--eval-seed must differ from --seed: the accuracy is measured on pictures not trained on")
    args.work.mkdir(parents=True, exist_ok=True)

    data_path = args.work / f"data-{args.images}-{args.seed}.npz"
    if not data_path.exists():
        logger.info("rendering %d training pictures", args.images)
        np.savez_compressed(data_path, **render_dataset(args.images, args.seed))
    data = dict(np.load(data_path))

    tokenizer = build_tokenizer()
    torch.manual_seed(args.seed)
    model = build_clip(tokenizer, args.vision_layers, args.text_layers)
    steps, seconds = _train(model, tokenizer, data, args, args.work)

    processor = build_processor(build_tokenizer())  # a fresh one: training leaves its padding settings in the other
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    (args.out / "model.safetensors").chmod(0o644)  # transformers 5 writes it readable by its owner alone
    # the processor's parts, each in its own file: transformers 4 and 5 both read this layout
    # (transformers 5's processor_config.json nests the image processor, which 4 cannot read)
    (args.out / "processor_config.json").unlink(missing_ok=True)
    processor.tokenizer.save_pretrained(args.out)
    processor.image_processor.save_pretrained(args.out)
    _name_image_processor(args.out / "preprocessor_config.json", type(processor.image_processor).__name__)

    fresh = render_dataset(args.eval_images, args.eval_seed, held_out=True)
    held_out = _held_out_dataset(args.eval_held_out, args.eval_seed + 1)
    metrics = {
        "zero_shot_accuracy": zero_shot_accuracy(model, processor, fresh),
        "zero_shot_accuracy_held_out": zero_shot_accuracy(model, processor, held_out),
        "text_score_by_shared_attributes": text_score_by_shared_attributes(model, processor, fresh),
        "classes": len(FULL_CAPTIONS),
        "held_out_combinations": [" ".join((size, colour, shape)) for shape, colour, size in HELD_OUT],
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_bytes": (args.out / "model.safetensors").stat().st_size,
        "steps": steps,
        "training_seconds": round(seconds),
        "temperature": round(1 / model.logit_scale.exp().item(), 5),
        "settings": {k: portable(v) for k, v in vars(args).items()},
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }
    (args.out / "training_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    logger.info("zero-shot accuracy on %d fresh pictures: %s", args.eval_images, metrics["zero_shot_accuracy"])
    logger.info("on the held-out combinations: %s", metrics["zero_shot_accuracy_held_out"])
    logger.info(
        "mean CLIP score of a caption sharing 0, 1, 2, 3 attributes with the picture: %s",
        metrics["text_score_by_shared_attributes"],
    )
    logger.info(
        "wrote %s (%d parameters, %d bytes of weights)", args.out, metrics["parameters"], metrics["weights_bytes"]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
