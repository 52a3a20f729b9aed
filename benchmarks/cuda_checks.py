"""What the CPU tests cannot see, checked once on a CUDA GPU: SD v1.4's architecture, float16, 512x512.

1. The plain images equal stock ``StableDiffusionPipeline`` output, with a deterministic
   scheduler (UniPC) and a stochastic one (Euler ancestral): CPU generators, CUDA tensors.
2. Ten seeds in batches of at most 12 images give what one batch of all 60 gives.
3. Under a 16 GB T4's memory (``set_per_process_memory_fraction``), the grid chapter's call
   (ten seeds, ``max_batch_size=12``) runs.

Random weights: the numbers compare the code paths, not pictures. Usage, on a CUDA machine:
``python benchmarks/cuda_checks.py --out benchmarks/cuda-checks.json``.
"""

import argparse
import json
import time
from pathlib import Path

import torch
from diffusers import EulerAncestralDiscreteScheduler, UniPCMultistepScheduler

from blending import PAPER_SEEDS, blend, blend_seeds
from blending.bench import T4_BUDGET_GIB
from blending.settings import library_versions
from blending.testing.architectures import build_sd_shaped_pipeline

STEPS = 10


def relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return ((a - b).abs().max() / a.abs().max()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--dry-run", action="store_true", help="on the CPU, at a tenth of the width and 64x64: checks the script"
    )
    args = parser.parse_args()
    if args.dry_run:
        pipe = build_sd_shaped_pipeline(10, torch.float32, "cpu")
        pipe.unet.config.sample_size = 8  # 64x64 images
    else:
        pipe = build_sd_shaped_pipeline(1, torch.float16, "cuda", full_text_encoder=True)
    report = {
        "device_name": "dry run" if args.dry_run else torch.cuda.get_device_name(),
        "date": time.strftime("%Y-%m-%d"),
        "versions": library_versions(),
        "steps": STEPS,
    }

    for scheduler_class in (UniPCMultistepScheduler, EulerAncestralDiscreteScheduler):
        pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
        result = blend(pipe, "lion", "cat", seed=21, num_inference_steps=STEPS, output_type="latent", progress=False)
        stock = pipe(
            "lion", generator=torch.Generator().manual_seed(21), num_inference_steps=STEPS, output_type="latent"
        ).images[0]
        report[f"plain vs stock, {scheduler_class.__name__}"] = {
            "relative_max_difference": relative_difference(stock, result.prompt_1),
            "finite": bool(torch.isfinite(result.prompt_1).all()),
        }

    pipe.scheduler = UniPCMultistepScheduler.from_config(pipe.scheduler.config)
    seeds = list(PAPER_SEEDS)
    whole = blend_seeds(
        pipe, "lion", "cat", seeds=seeds, num_inference_steps=STEPS, output_type="latent", progress=False
    )
    batched = blend_seeds(
        pipe,
        "lion",
        "cat",
        seeds=seeds,
        num_inference_steps=STEPS,
        output_type="latent",
        progress=False,
        max_batch_size=12,
    )
    report["ten seeds, max_batch_size 12 vs one batch"] = {
        "relative_max_difference": max(
            relative_difference(
                getattr(a, name) if name.startswith("prompt") else a.blends[name],
                getattr(b, name) if name.startswith("prompt") else b.blends[name],
            )
            for a, b in zip(whole, batched)
            for name in ("prompt_1", "prompt_2", *a.blends)
        )
    }

    if args.dry_run:
        print(json.dumps(report, indent=2))
        return
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(T4_BUDGET_GIB * 2**30 / torch.cuda.get_device_properties(0).total_memory)
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    blend_seeds(
        pipe, "lion", "cat", seeds=seeds, num_inference_steps=25, output_type="pil", progress=False, max_batch_size=12
    )
    report["grid chapter under a T4's memory (25 steps, max_batch_size 12)"] = {
        "budget_gib": T4_BUDGET_GIB,
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
        "seconds": time.perf_counter() - started,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
