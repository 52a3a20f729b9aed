"""Command line: ``python -m blending blend "lion" "cat" --methods switch --seed 21 --out DIR``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

__all__ = ["main"]

logger = logging.getLogger(__name__)


class _Parser(argparse.ArgumentParser):
    """Bad arguments end with exit code 2 and one line on stderr, not the whole usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    from .loading import PAPER_MODEL
    from .methods import METHODS, UNET_POOLED

    parser = _Parser(prog="blending", description="Blend two concepts with a diffusion model.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser("blend", help="blend two prompts and write the images")
    run.add_argument("prompt_1")
    run.add_argument("prompt_2")
    run.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    run.add_argument("--ratio", type=float, default=0.5, help="weight of prompt 2, in [0, 1] (default 0.5)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--steps", type=int, default=25, dest="num_inference_steps")
    run.add_argument("--guidance-scale", type=float, default=7.5)
    run.add_argument("--height", type=int)
    run.add_argument("--width", type=int)
    run.add_argument("--negative-prompt")
    run.add_argument("--switch-step", type=int, help="SWITCH's number of prompt-1 steps")
    run.add_argument(
        "--unet-pooled",
        choices=list(UNET_POOLED),
        default="ratio",
        help="SDXL only: the pooled embedding of UNET blends (default: interpolated at the ratio)",
    )
    run.add_argument("--model", default="embedded", help=f"'embedded', a Hub id such as {PAPER_MODEL}, or a folder")
    run.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    run.add_argument("--dtype", choices=["float32", "float16", "bfloat16"])
    run.add_argument("--scheduler", default="UniPCMultistepScheduler")
    run.add_argument("--variant", help="weights variant, e.g. fp16 (SDXL base's half-size files)")
    run.add_argument("--max-batch-size", type=int, help="the most images per U-Net call (default: all at once)")
    run.add_argument("--out", type=Path, required=True, help="folder for the PNGs and settings.json")
    return parser


def _blend(args) -> int:
    import torch

    from .loading import load_pipeline
    from .pipeline import blend
    from .plot import triptych

    started = time.perf_counter()
    dtype = None if args.dtype is None else getattr(torch, args.dtype)
    pipe = load_pipeline(args.model, device=args.device, dtype=dtype, scheduler=args.scheduler, variant=args.variant)
    result = blend(
        pipe,
        args.prompt_1,
        args.prompt_2,
        args.methods,
        args.ratio,
        seed=args.seed,
        num_inference_steps=args.num_inference_steps,
        guidance_scale=args.guidance_scale,
        height=args.height,
        width=args.width,
        negative_prompt=args.negative_prompt,
        switch_step=args.switch_step,
        unet_pooled=args.unet_pooled,
        max_batch_size=args.max_batch_size,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    result.prompt_1.save(args.out / "prompt_1.png")
    result.prompt_2.save(args.out / "prompt_2.png")
    for method, image in result.blends.items():
        image.save(args.out / f"{method}.png")
        triptych(result, method, save=args.out / f"triptych_{method}.png")
    settings = dict(result.settings, elapsed_seconds=round(time.perf_counter() - started, 3))
    (args.out / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    logger.info("wrote %d images to %s", 2 + len(result.blends), args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .loading import ModelUnavailableError

    try:
        return _blend(args)
    except ValueError as error:  # bad arguments that argparse could not see, e.g. ratio 2
        print(f"blending: error: {error}", file=sys.stderr)
        return 2
    except ModelUnavailableError as error:
        print(f"blending: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
