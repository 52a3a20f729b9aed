"""Command line: ``python -m blending blend "lion" "cat" --methods switch --seed 21 --out DIR``,
``python -m blending sweep toy --out runs/toy`` and ``python -m blending survey make|serve|simulate|report``."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import time
import warnings
from pathlib import Path

from .errors import InputError

__all__ = ["main"]

logger = logging.getLogger(__name__)

# The loggers that chatter while the libraries import and a model loads ("... requires
# torchvision", "Couldn't connect to the Hub"): on the command line only their errors show, so that
# a one-line error is the only line. diffusers' warnings about the images (a truncated prompt) stay.
_CHATTY_LOGGERS = (
    "transformers",
    "huggingface_hub",
    "diffusers.configuration_utils",
    "diffusers.models.modeling_utils",
    "diffusers.pipelines.pipeline_loading_utils",
    "diffusers.pipelines.pipeline_utils",
    "diffusers.utils",
    "httpx",  # a line per request of the simulated participants
)
_CHATTY_MODULES = r"(accelerate|diffusers|huggingface_hub|torch|transformers)(\.|$)"


class _Parser(argparse.ArgumentParser):
    """Bad arguments end with exit code 2 and one line on stderr, not the whole usage."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from .experiments.index import JOURNAL_MODES
    from .experiments.runner import DEFAULT_MAX_BATCH_SIZE
    from .experiments.schema import GENERATOR_DEVICES
    from .loading import PAPER_MODEL
    from .methods import METHODS, UNET_POOLED

    parser = _Parser(
        prog="blending",
        description="Blend two concepts with a diffusion model.",
        epilog="examples:\n  blending blend lion cat --out lion-cat\n  blending sweep toy --out runs/toy\n"
        "  blending survey make runs/toy --out runs/survey",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = commands.add_parser(
        "blend",
        help="blend two prompts with each method and write the images",
        description="Blend two prompts with each method, beside both plain images, and write the PNGs.",
        epilog="example: blending blend lion cat --methods switch unet --seed 21 --out lion-cat",
    )
    run.add_argument("prompt_1")
    run.add_argument("prompt_2")
    run.add_argument(
        "--methods",
        nargs="+",
        choices=list(METHODS),
        help="default: every method the model's family defines (all four; SD3 and FLUX.1: all but unet)",
    )
    run.add_argument("--ratio", type=float, default=0.5, help="weight of prompt 2, in [0, 1] (default 0.5)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--steps", type=int, default=25, dest="num_inference_steps")
    run.add_argument(
        "--guidance-scale",
        type=float,
        help="classifier-free guidance (default 7.5, the paper's; SD3: 7.0); FLUX.1 dev: its distilled "
        "guidance (default 3.5); FLUX.1 schnell takes none",
    )
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
    run.add_argument(
        "--scheduler",
        help="a diffusers scheduler class (default: UniPCMultistepScheduler, the paper's, for SD 1.x/2.x and SDXL; "
        "the checkpoint's own for SD3 and FLUX.1)",
    )
    run.add_argument("--variant", help="weights variant, e.g. fp16 (SDXL base's half-size files)")
    run.add_argument(
        "--max-batch-size", type=int, help="the most images per U-Net or transformer call (default: all at once)"
    )
    run.add_argument(
        "--generator-device",
        default="cpu",
        help="where the seed's noise is drawn (default cpu, as diffusers recommends; cuda: the paper authors' noise)",
    )
    run.add_argument("--out", type=Path, required=True, help="folder for the PNGs and settings.json")

    sweep = commands.add_parser(
        "sweep",
        help="run every comparison of an experiment file, resumably",
        description="Run an experiment: 'paper', 'toy' or a YAML file. Rerun the same command to resume.",
        epilog="example: blending sweep toy --out runs/toy; on several GPUs: accelerate launch -m blending sweep ...",
    )
    sweep.add_argument("experiment", nargs="?", help="'paper', 'toy' or a YAML experiment file")
    sweep.add_argument("--out", type=Path, help="folder for images/, index.sqlite and gallery.html")
    sweep.add_argument("--gallery", type=Path, metavar="DIR", help="only (re)write DIR/gallery.html from its index")
    sweep.add_argument("--model", help="instead of the experiment's model")
    sweep.add_argument("--device", help="cuda, mps or cpu (default: the best available)")
    sweep.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], help="default: float16 on cuda")
    sweep.add_argument("--scheduler", default="UniPCMultistepScheduler")
    sweep.add_argument(
        "--max-batch-size",
        type=int,
        default=DEFAULT_MAX_BATCH_SIZE,
        help=f"the most images per U-Net call (default {DEFAULT_MAX_BATCH_SIZE}: SD v1.4 at 512x512 on a 16 GB GPU)",
    )
    sweep.add_argument(
        "--generator-device",
        choices=list(GENERATOR_DEVICES),
        help="where each seed's noise is drawn, instead of the experiment's (auto: cuda when the sweep runs on cuda)",
    )
    sweep.add_argument(
        "--journal-mode",
        choices=list(JOURNAL_MODES),
        default="wal",
        help="the index's SQLite journal: wal (default; several processes) or delete (network drives; one process)",
    )
    sweep.add_argument("--force", action="store_true", help="start over: delete the images, scores and index in --out")
    sweep.add_argument(
        "--score", metavar="CLIP", help="add CLIP scores to the index: 'embedded', or a CLIP id or folder"
    )
    _survey_parsers(commands)
    return parser


def _sweep(args) -> int:
    from dataclasses import replace

    from .experiments.gallery import write_gallery
    from .experiments.runner import run_sweep
    from .experiments.schema import load_experiment

    if args.gallery is not None:
        print(write_gallery(args.gallery))
        return 0
    if args.experiment is None or args.out is None:
        raise InputError("sweep needs an EXPERIMENT and --out DIR (or --gallery DIR)")
    experiment = load_experiment(args.experiment)  # every key checked before any model loads
    if args.model:
        experiment = replace(experiment, model=args.model)
    if args.max_batch_size < 1:
        raise InputError(f"--max-batch-size must be an integer >= 1, got {args.max_batch_size}")
    _make_out(args.out)
    import torch
    from accelerate import PartialState

    # one process, or one of those accelerate launch (or torchrun) started; without CUDA they
    # meet over gloo on the CPU
    state = PartialState(cpu=not torch.cuda.is_available())
    run = {
        "device": args.device or (str(state.device) if state.num_processes > 1 else None),
        "dtype": args.dtype,
        "scheduler": args.scheduler,
        "max_batch_size": args.max_batch_size,
        "generator_device": args.generator_device,
        "journal_mode": args.journal_mode,
    }
    if state.num_processes > 1:
        _prepare_together(state, args.out, experiment, force=args.force, **run)
    run_sweep(
        experiment,
        args.out,
        **run,
        force=args.force and state.num_processes == 1,  # several: the main process started over
        progress=state.is_main_process,
        process_index=state.process_index,
        num_processes=state.num_processes,
        score=args.score,
    )
    state.wait_for_everyone()
    if state.is_main_process and state.num_processes > 1:
        write_gallery(args.out)
    logger.info("sweep done: %s", args.out)
    return 0


def _prepare_together(state, out: Path, experiment, **settings) -> None:
    """The main process sets the index up (the others open it once it exists), then tells every
    process how that went: an error there ends them all at once, with its message, instead of
    leaving them waiting at a barrier the main process never reaches."""
    from accelerate.utils import broadcast_object_list

    from .experiments.runner import prepare_index
    from .experiments.schema import ExperimentError

    failure, outcome = None, [None]
    if state.is_main_process:
        try:
            prepare_index(out, experiment, **settings)
        except Exception as error:  # every process must learn of it, whatever it is
            failure, outcome = error, [(isinstance(error, InputError), str(error))]
    broadcast_object_list(outcome, from_process=0)  # a collective: also the barrier
    if outcome[0] is None:
        return
    if failure is not None:
        raise failure
    bad_input, message = outcome[0]
    if bad_input:
        raise ExperimentError(message)
    raise RuntimeError(f"the main process failed to set up the index: {message}")


def _make_out(out: Path) -> None:
    """Create the output folder, or one line saying why not."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"--out: cannot create {str(out)!r} ({error.strerror})") from None


def _blend(args) -> int:
    import torch

    from .loading import load_pipeline, resolve_device
    from .methods import METHODS
    from .plot import triptych
    from .sampling import blend
    from .settings import MAX_SEED, BlendSettings, check_settings

    started = time.perf_counter()
    settings = {
        "num_inference_steps": args.num_inference_steps,
        "guidance_scale": args.guidance_scale,
        "height": args.height,
        "width": args.width,
        "negative_prompt": args.negative_prompt,
        "switch_step": args.switch_step,
        "unet_pooled": args.unet_pooled,
        "max_batch_size": args.max_batch_size,
        "generator_device": args.generator_device,
    }
    # every argument, before a model (gigabytes, for Stable Diffusion) is loaded
    methods = tuple(args.methods or METHODS)  # the family's, once the model is loaded
    check_settings(BlendSettings(args.prompt_1, args.prompt_2, methods, args.ratio, **settings))
    if not 0 <= args.seed <= MAX_SEED:
        raise InputError(f"--seed must be an integer in [0, 2**64 - 1], got {args.seed}")
    dtype = None if args.dtype is None else getattr(torch, args.dtype)
    device, _ = resolve_device(args.device, dtype)
    _make_out(args.out)
    # without --dtype, load_pipeline picks the family's (bfloat16 for SD3 and FLUX.1 on cuda)
    pipe = load_pipeline(args.model, device=device, dtype=dtype, scheduler=args.scheduler, variant=args.variant)
    result = blend(pipe, args.prompt_1, args.prompt_2, args.methods, args.ratio, seed=args.seed, **settings)
    result.prompt_1.save(args.out / "prompt_1.png")
    result.prompt_2.save(args.out / "prompt_2.png")
    for method, image in result.blends.items():
        image.save(args.out / f"{method}.png")
        triptych(result, method, save=args.out / f"triptych_{method}.png")
    settings = dict(result.settings, elapsed_seconds=round(time.perf_counter() - started, 3))
    (args.out / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    logger.info("wrote %d images to %s", 2 + len(result.blends), args.out)
    return 0


@contextlib.contextmanager
def _library_chatter_silenced():
    """Only errors from the chatty loggers, and no warnings from the libraries' modules, until the end."""
    # each library sets its own logger's level when its logging module is first imported
    import huggingface_hub.utils.logging  # noqa: F401
    import transformers.utils.logging  # noqa: F401

    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [chatty.level for chatty in loggers]
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, UserWarning):
            warnings.filterwarnings("ignore", category=category, module=_CHATTY_MODULES)
        for chatty in loggers:
            chatty.setLevel(logging.ERROR)
        try:
            yield
        finally:  # as they were, for a caller in the same process
            for chatty, level in zip(loggers, levels):
                chatty.setLevel(level)


def _survey_parsers(commands) -> None:
    """``blending survey make|serve|simulate|report``: a blind user study of a sweep's blends."""
    survey = commands.add_parser(
        "survey",
        help="make, serve, simulate and report a blind user study of a sweep's blends",
        description="A blind user study of blends: make it from a sweep, serve it to participants, report it.",
        epilog="example: blending survey make runs/toy --out runs/survey && blending survey serve runs/survey",
    )
    steps = survey.add_subparsers(dest="survey_command", required=True, parser_class=_Parser)
    make = steps.add_parser("make", help="write a study design from a sweep's folder")
    make.add_argument("run_dir", type=Path, help="a sweep's folder (index.sqlite, images/)")
    make.add_argument("--out", type=Path, required=True, help="the study folder to write (design.json, images/)")
    make.add_argument("--methods", nargs="+", help="the methods shown (default: every method the sweep has)")
    make.add_argument(
        "--trials-per-participant", type=int, help="blend trials each participant sees (default: all, at most 40)"
    )
    make.add_argument("--attention-checks", type=int, default=2, help="per participant (default: 2)")
    make.add_argument("--seed", type=int, default=0, help="the design's seed: the same inputs give the same design")
    serve = steps.add_parser("serve", help="serve a study to participants in their browsers")
    serve.add_argument("study_dir", type=Path, help="the study folder (design.json); answers go to answers.sqlite")
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1; behind a reverse proxy, keep it local")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--admin-token", help="the token for /admin/answers.csv (default: a new random one, printed)")
    serve.add_argument("--root-path", default="", help="the prefix a reverse proxy serves the study under, e.g. /study")
    from .survey import report, simulate

    simulate.add_arguments(steps.add_parser("simulate", help="simulated participants through the HTTP API"))
    report.add_arguments(steps.add_parser("report", help="win shares, strengths and agreement, with intervals"))


def _survey(args) -> int:
    if args.survey_command == "make":
        from .survey.design import make_study

        path = make_study(
            args.run_dir,
            args.out,
            methods=args.methods,
            trials_per_participant=args.trials_per_participant,
            attention_checks=args.attention_checks,
            seed=args.seed,
        )
        logger.info("wrote %s", path)
        return 0
    if args.survey_command == "serve":
        from .survey.server import serve

        serve(args.study_dir, args.host, args.port, args.admin_token, root_path=args.root_path)
        return 0
    from .survey import report, simulate

    return (simulate if args.survey_command == "simulate" else report).run(args)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .loading import ModelUnavailableError

    # anything else, a ValueError from inside diffusers, transformers or torch say, keeps its
    # traceback: it is a bug report, not a bad argument
    with _library_chatter_silenced():
        try:
            return {"sweep": _sweep, "survey": _survey, "blend": _blend}[args.command](args)
        except InputError as error:  # bad arguments that argparse could not see, e.g. ratio 2
            print(f"blending: error: {error}", file=sys.stderr)
            return 2
        except ModelUnavailableError as error:
            print(f"blending: error: {error}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
