"""Train the toy world's text-to-image model from scratch: ``python -m blending.toy.train``.

Stages, each resumable from its checkpoint in ``--work``:

1. render the training pictures (fixed seed; the :data:`~blending.toy.world.HELD_OUT`
   combinations are never drawn);
2. train the autoencoder (``AutoencoderKL``: 64x64 pictures to 4x8x8 latents);
3. encode every picture and set the latents' scaling factor, as Stable Diffusion does;
4. train the shape/size reader on the world's pictures and their autoencoder reconstructions;
5. train the text encoder and the U-Net together on noised latents (epsilon prediction, SD's noise
   schedule, captions dropped 10% of the time for classifier-free guidance, EMA weights), never
   on the :data:`VALIDATION` combinations either; every 500 steps, plain generations of those
   combinations are read by the reader, and the EMA weights that draw them best are kept;
6. write the pipeline (safetensors) and the reader, then measure: the readers' accuracy on fresh
   pictures, and how often plain generations of the held-out prompts show the prompted shape and
   colour (200 samples, the paper's sampler: UniPC, 25 steps, guidance 7.5).

The defaults take about an hour and a half on a 2-core CPU (rendering and the autoencoder about
15 minutes, the readers 2, the 7000 denoiser steps with a validation every 500 about 75, the
measurements 1) and write the package's embedded model. The shipped weights come from these
defaults with ``--threads 2``, written to a staging folder (``--work .toy-train/run2 --out
.toy-train/run2/embedded --readers-out .toy-train/run2/readers/model.safetensors``) and copied
into the package once the measurements passed; its pictures, autoencoder and latents were those
of an earlier run with the same seed and settings (the stages before the denoiser do not
depend on it). ``training_metrics.json`` beside the weights records the settings, the
validation at every 500 steps, the step kept and the measurements. Other thread counts give
other floating-point rounding, so a rerun gives weights that measure alike, not the same bytes.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import model as toy
from . import portable
from .readers import READERS_PATH, ShapeSizeNet, read
from .world import COLOURS, HELD_OUT, SHAPES, SIZES, Attributes, caption, render, sample_attributes

__all__ = ["evaluate", "main"]

logger = logging.getLogger(__name__)

#: Combinations the denoiser never trains on either (they are in the pictures the autoencoder and
#: readers learn from): their plain generations choose the denoiser's checkpoint.
VALIDATION = (("circle", "purple", "large"), ("triangle", "red", "small"), ("square", "yellow", "large"))
#: Steps between validations of the denoiser (a multiple of the checkpoint interval, 250).
VALIDATE_EVERY = 500


# -- 1. data ----------------------------------------------------------------------------------


def render_dataset(count: int, seed: int) -> dict[str, np.ndarray]:
    """``count`` pictures (uint8) with their attribute indices; no held-out combination."""
    rng = random.Random(seed)
    attributes = [sample_attributes(rng) for _ in range(count)]
    images = np.stack([(render(a) * 255).round().astype(np.uint8) for a in tqdm(attributes, desc="rendering")])
    return {
        "images": images,
        "shape": np.array([SHAPES.index(a.shape) for a in attributes]),
        "colour": np.array([list(COLOURS).index(a.colour) for a in attributes]),
        "size": np.array([list(SIZES).index(a.size) for a in attributes]),
    }


def _as_model_input(images_uint8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float() / 127.5 - 1


# -- a resumable training loop ----------------------------------------------------------------


def _fit(
    name,
    modules,
    step_loss,
    steps,
    lr,
    work: Path,
    seed: int,
    ema_decay: float | None = None,
    every: int = 0,
    on_checkpoint=None,
):
    """Train ``modules`` for ``steps`` steps of ``step_loss(generator) -> loss``; resumable.

    Returns the EMA copies of the modules when ``ema_decay`` is set, else the modules. Every
    ``every`` steps (a multiple of 250, the checkpoint interval) and at the last step, after the
    checkpoint is written, ``on_checkpoint(step, returned_modules)`` is called.
    """
    checkpoint = work / f"{name}.pt"
    parameters = [p for m in modules for p in m.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    warmup = max(1, min(500, steps // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        # a Python float: numpy scalars in the checkpoint would not load with weights_only=True
        optimizer,
        lambda s: float(min(1.0, (s + 1) / warmup) * 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps))),
    )
    averaged = [copy.deepcopy(m).requires_grad_(False) for m in modules] if ema_decay else None
    generator = torch.Generator().manual_seed(seed)
    start = 0
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=True)
        for m, s in zip(modules, state["modules"]):
            m.load_state_dict(s)
        if averaged:
            for m, s in zip(averaged, state["averaged"]):
                m.load_state_dict(s)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        start = state["step"]
        logger.info("%s: resuming at step %d of %d", name, start, steps)

    def save(step):
        torch.save(
            {
                "step": step,
                "modules": [m.state_dict() for m in modules],
                "averaged": [m.state_dict() for m in averaged] if averaged else None,
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "generator": generator.get_state(),
            },
            checkpoint,
        )

    for m in modules:
        m.train()
    bar = tqdm(range(start, steps), desc=name, initial=start, total=steps)
    running = None
    for step in bar:
        loss = step_loss(generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        if averaged:
            with torch.no_grad():
                for a, m in zip(averaged, modules):
                    for pa, pm in zip(a.parameters(), m.parameters()):
                        pa.lerp_(pm, 1 - ema_decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        bar.set_postfix(loss=f"{running:.4f}")
        if (step + 1) % 250 == 0 or step + 1 == steps:
            save(step + 1)
        if on_checkpoint is not None and ((step + 1) % every == 0 or step + 1 == steps):
            on_checkpoint(step + 1, averaged or modules)
            for m in modules:
                m.train()
    for m in modules:
        m.eval()
    return averaged or modules


def _batch(generator: torch.Generator, count: int, batch_size: int) -> torch.Tensor:
    return torch.randint(0, count, (batch_size,), generator=generator)


# -- 2. autoencoder ---------------------------------------------------------------------------


def train_vae(data, steps: int, batch_size: int, work: Path, seed: int):
    vae = toy.build_vae()
    images = data["images"]

    def loss(generator):
        x = _as_model_input(images[_batch(generator, len(images), batch_size).numpy()])
        posterior = vae.encode(x).latent_dist
        reconstruction = vae.decode(posterior.sample(generator)).sample
        # a light KL keeps the latents smooth and near unit scale, as in Stable Diffusion's VAE
        return F.mse_loss(reconstruction, x) + 1e-6 * posterior.kl().mean()

    (vae,) = _fit("vae", [vae], loss, steps, 1e-3, work, seed)
    return vae


@torch.no_grad()
def encode(vae, images: np.ndarray, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and standard deviations of every picture."""
    means, stds = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="encoding"):
        posterior = vae.encode(_as_model_input(images[start : start + batch_size])).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    return torch.cat(means), torch.cat(stds)


# -- 4. text encoder and U-Net ----------------------------------------------------------------


def _combination_mask(data, combinations) -> np.ndarray:
    """Which pictures of ``data`` show one of ``combinations`` (shape, colour, size)."""
    codes = {
        (SHAPES.index(shape), list(COLOURS).index(colour), list(SIZES).index(size))
        for shape, colour, size in combinations
    }
    return np.array([tuple(c) in codes for c in zip(data["shape"], data["colour"], data["size"])])


def train_denoiser(data, latents_mean, latents_std, scaling_factor, tokenizer, steps, batch_size, work, seed, validate):
    """The text encoder and U-Net (EMA weights) at the checkpoint whose plain generations of the
    :data:`VALIDATION` combinations, which it never trains on, are best: ``validate(text_encoder,
    unet) -> shape_and_colour``, every :data:`VALIDATE_EVERY` steps. Fitting the training
    combinations ever better can cost the unseen ones (the world's training pictures never show
    a large red cross, so "large cross" comes to mean "not red"); the validation combinations
    choose the length, and the held-out prompts stay untouched for the final measurement."""
    text_encoder, unet = toy.build_text_encoder(tokenizer), toy.build_unet()
    trainable = torch.from_numpy(np.flatnonzero(~_combination_mask(data, VALIDATION)))
    noise_scheduler = toy.build_noise_scheduler()
    names = {"shape": SHAPES, "colour": list(COLOURS), "size": list(SIZES)}
    # Caption dropout has its own seeded generator, not checkpointed: a resumed run draws other
    # captions than an uninterrupted one (same distribution, other samples).
    rng = random.Random(seed)

    def captions_for(indices):
        texts = []
        for i in indices:
            if rng.random() < 0.1:
                texts.append("")  # the unconditional prompt of classifier-free guidance
                continue
            keep = tuple(rng.random() >= 0.3 for _ in range(3))
            words = {k: names[k][data[k][i]] for k in names}
            texts.append(caption(Attributes(**words), keep))
        return texts

    def loss(generator):
        indices = trainable[_batch(generator, len(trainable), batch_size)]
        latents = latents_mean[indices] + latents_std[indices] * torch.randn(
            latents_mean[indices].shape, generator=generator
        )
        latents = latents * scaling_factor
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        ids = tokenizer(
            captions_for(indices.tolist()),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        prediction = unet(noisy, timesteps, encoder_hidden_states=text_encoder(ids)[0]).sample
        return F.mse_loss(prediction, noise)

    history_path, best_path = work / "denoiser-validation.json", work / "denoiser-best.pt"
    history = json.loads(history_path.read_text()) if history_path.exists() else {}

    def on_checkpoint(step, modules):
        score = validate(*modules)
        best = max(history.values(), default=-1.0)
        history[str(step)] = score
        logger.info("denoiser: step %d, validation shape_and_colour %.3f", step, score)
        if score > best:  # ties keep the earlier, shorter run
            torch.save({"step": step, "modules": [m.state_dict() for m in modules]}, best_path)
        history_path.write_text(json.dumps(history, indent=1) + "\n")

    modules = _fit(
        "denoiser",
        [text_encoder, unet],
        loss,
        steps,
        1e-3,
        work,
        seed,
        ema_decay=0.999,
        every=VALIDATE_EVERY,
        on_checkpoint=on_checkpoint,
    )
    best = torch.load(best_path, weights_only=True)
    for m, state in zip(modules, best["modules"]):
        m.load_state_dict(state)
    logger.info(
        "denoiser: the weights of step %d (validation shape_and_colour %.3f)", best["step"], history[str(best["step"])]
    )
    return (
        *modules,
        {
            "combinations": [list(c) for c in VALIDATION],
            "shape_and_colour_by_step": history,
            "chosen_step": best["step"],
        },
    )


# -- 5. readers -------------------------------------------------------------------------------


def train_readers(data, vae, steps: int, batch_size: int, work: Path, seed: int) -> ShapeSizeNet:
    net = ShapeSizeNet()
    images = data["images"]

    def loss(generator):
        indices = _batch(generator, len(images), batch_size)
        x = _as_model_input(images[indices.numpy()])
        with torch.no_grad():  # half the batch as the autoencoder redraws it, as generations look
            half = batch_size // 2
            x[:half] = vae.decode(vae.encode(x[:half]).latent_dist.mean).sample.clamp(-1, 1)
        x = x + 0.03 * torch.randn(x.shape, generator=generator)
        logits_shape, logits_size = net(x)
        return F.cross_entropy(logits_shape, torch.from_numpy(data["shape"][indices.numpy()])) + F.cross_entropy(
            logits_size, torch.from_numpy(data["size"][indices.numpy()])
        )

    (net,) = _fit("readers", [net], loss, steps, 2e-3, work, seed)
    return net


# -- 6. measuring -----------------------------------------------------------------------------


def reader_accuracy(net: ShapeSizeNet, count: int = 1000, seed: int = 12345) -> dict[str, float]:
    """The readers' accuracy on fresh pictures of the world (held-out combinations included)."""
    rng = random.Random(seed)
    attributes = [sample_attributes(rng, held_out=True) for _ in range(count)]
    readings = read([render(a) for a in attributes], net)
    return {
        key: float(np.mean([getattr(r, key) == getattr(a, key) for r, a in zip(readings, attributes)]))
        for key in ("shape", "colour", "size")
    }


@torch.no_grad()
def evaluate(
    pipe, net: ShapeSizeNet, samples_per_prompt: int = 40, seed: int = 0, combinations=HELD_OUT
) -> dict[str, float]:
    """How often plain generations of the prompts of ``combinations`` (the held-out ones by
    default) show the prompted attributes."""
    hits = {"shape": [], "colour": [], "size": [], "shape_and_colour": []}
    for i, (shape, colour, size) in enumerate(combinations):
        prompt = f"a {size} {colour} {shape}"
        generators = [torch.Generator().manual_seed(seed + 1000 * i + k) for k in range(samples_per_prompt)]
        images = pipe(
            prompt,
            num_images_per_prompt=samples_per_prompt,
            generator=generators,
            num_inference_steps=25,
            guidance_scale=7.5,
            output_type="np",
        ).images
        for r in read(images, net):
            hits["shape"].append(r.shape == shape)
            hits["colour"].append(r.colour == colour)
            hits["size"].append(r.size == size)
            hits["shape_and_colour"].append(r.shape == shape and r.colour == colour)
    return {k: float(np.mean(v)) for k, v in hits.items()} | {"samples": len(hits["shape"])}


# -- the whole run ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from diffusers import StableDiffusionPipeline, UniPCMultistepScheduler
    from safetensors.torch import save_file

    from ..loading import EMBEDDED_PATH
    from ..testing.components import SD_SCHEDULER_CONFIG

    parser = argparse.ArgumentParser(prog="python -m blending.toy.train", description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(".toy-train"), help="checkpoints and data (resumable)")
    parser.add_argument("--out", type=Path, default=EMBEDDED_PATH, help="where the pipeline goes")
    parser.add_argument("--readers-out", type=Path, default=READERS_PATH)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--vae-steps", type=int, default=800)
    parser.add_argument("--denoiser-steps", type=int, default=7000)
    parser.add_argument("--reader-steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--eval-samples", type=int, default=40, help="generations per held-out prompt")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    data_path = args.work / "data.npz"
    if not data_path.exists():
        np.savez(data_path, **render_dataset(args.images, args.seed))
    data = dict(np.load(data_path))

    torch.manual_seed(args.seed)
    vae = train_vae(data, args.vae_steps, 24, args.work, args.seed)
    latents_path = args.work / f"latents-vae{args.vae_steps}.pt"  # stale once the autoencoder trains on
    if not latents_path.exists():
        torch.save(dict(zip(("mean", "std"), encode(vae, data["images"]))), latents_path)
    latents = torch.load(latents_path, weights_only=True)
    scaling_factor = float(1 / latents["mean"].std())
    vae.register_to_config(scaling_factor=scaling_factor)
    logger.info("latent scaling factor %.4f", scaling_factor)

    tokenizer = toy.build_tokenizer()
    torch.manual_seed(args.seed + 2)
    net = train_readers(data, vae, args.reader_steps, 64, args.work, args.seed)

    def pipeline(text_encoder, unet):
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=UniPCMultistepScheduler(**SD_SCHEDULER_CONFIG),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def validate(text_encoder, unet) -> float:
        pipe = pipeline(text_encoder.eval(), unet.eval())
        return evaluate(pipe, net, samples_per_prompt=args.eval_samples, seed=1, combinations=VALIDATION)[
            "shape_and_colour"
        ]

    torch.manual_seed(args.seed + 1)
    text_encoder, unet, validation = train_denoiser(
        data,
        latents["mean"],
        latents["std"],
        scaling_factor,
        tokenizer,
        args.denoiser_steps,
        args.batch_size,
        args.work,
        args.seed,
        validate,
    )
    pipe = pipeline(text_encoder, unet)
    args.readers_out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, args.readers_out)

    metrics = {
        "readers_accuracy": reader_accuracy(net),
        "held_out_generations": evaluate(pipe, net, samples_per_prompt=args.eval_samples),
        "validation": validation,
    }
    metrics["training_seconds"] = round(time.perf_counter() - started)
    metrics["settings"] = {k: portable(v) for k, v in vars(args).items()}
    pipe.save_pretrained(args.out, safe_serialization=True)
    (args.out / "training_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    logger.info("readers' accuracy on the world's pictures: %s", metrics["readers_accuracy"])
    logger.info("held-out prompts, plain generations: %s", metrics["held_out_generations"])
    logger.info("wrote %s and %s", args.out, args.readers_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
