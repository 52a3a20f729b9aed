"""Benchmark one full comparison (2 plain images + 4 blends) against stock diffusers.

``python -m blending.bench`` measures, in one process and alternating the contenders, the median
of several runs after a warm-up:

1. U-Net work: the batch rows that go through the U-Net for one comparison, against the minimum
   (6 images x steps x 2 for classifier-free guidance) and the authors' strategy (every blend
   regenerates both plain images; SWITCH's blend shares the steps before its switch);
2. wall time of :func:`blending.blend` against stock ``StableDiffusionPipeline`` calls, one per
   image, with the same embeddings, callbacks and attention processors (the same images);
3. peak memory of both (CUDA: ``max_memory_allocated``; CPU: peak resident memory of a fresh
   process per contender).

On the CPU the model is Stable Diffusion v1.4's architecture at a tenth of its width with random
weights (``--width-divisor``), at 128x128; with ``--device cuda`` it is the full architecture at
512x512 in float16.
Results go to ``--out`` as JSON and a markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch

from . import PAPER_SEEDS
from .loading import load_pipeline, optimize_unet
from .methods import METHODS
from .sampling import blend, blend_seeds
from .settings import library_versions
from .testing.architectures import build_sd_shaped_pipeline
from .testing.stock import authors_unet_rows, count_unet_rows, stock_one_at_a_time

__all__ = ["MEMORY_CASES", "T4_BUDGET_GIB", "main", "measure", "measure_memory", "measure_sweep", "sweep_table"]

logger = logging.getLogger(__name__)

PROMPTS = ("lion", "cat")
#: Dense fp16/bf16 tensor-core peaks (TFLOP/s), for the fraction of peak reached.
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}


# -- measuring --------------------------------------------------------------------------------


def _contenders(pipe, settings):
    return {
        "blending.blend (one batch)": lambda: blend(pipe, *PROMPTS, progress=False, **settings),
        "stock, one call per image": lambda: stock_one_at_a_time(pipe, *PROMPTS, **settings),
    }


def _synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _resident_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith(field)).split()[1])


def _run_contender(pipe, name, settings):
    _contenders(pipe, settings)[name]()


def _peak_rss_probe(queue, width_divisor, job, *args):
    """In a fresh process: peak resident memory of ``job(pipe, *args)`` beyond what the loaded model holds."""
    pipe = build_sd_shaped_pipeline(width_divisor)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the peak (VmHWM) to the current resident size: building the model is not the run
    loaded = _resident_kb("VmRSS:")
    job(pipe, *args)
    queue.put(_resident_kb("VmHWM:") - loaded)


def _peak_rss_mb(width_divisor, job, *args) -> float:
    """Peak resident memory (MB) of one run of ``job``, in a fresh process (CPU only)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    probe = context.Process(target=_peak_rss_probe, args=(queue, width_divisor, job, *args))
    probe.start()
    peak_kb = queue.get()
    probe.join()
    return peak_kb / 1024


def measure(pipe, settings: dict, runs: int, width_divisor: int | None) -> dict:
    device = pipe._execution_device
    contenders = _contenders(pipe, settings)
    steps = settings["num_inference_steps"]
    results = {"unet_rows": {}, "seconds": {}, "peak_memory_mb": {}}
    for name, run in contenders.items():
        results["unet_rows"][name] = count_unet_rows(pipe.unet, run)  # also the warm-up
    results["unet_rows"]["minimum (6 images)"] = 6 * steps * 2
    results["unet_rows"]["authors' strategy"] = authors_unet_rows(steps)
    times = {name: [] for name in contenders}
    for _ in range(runs):  # alternate, so that drift hits both alike
        for name, run in contenders.items():
            _synchronize(device)
            started = time.perf_counter()
            run()
            _synchronize(device)
            times[name].append(time.perf_counter() - started)
    results["seconds"] = {name: statistics.median(t) for name, t in times.items()}
    results["all_seconds"] = times
    for name, run in contenders.items():
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            run()
            results["peak_memory_mb"][name] = torch.cuda.max_memory_allocated() / 2**20
        elif width_divisor is not None:
            results["peak_memory_mb"][name] = _peak_rss_mb(width_divisor, _run_contender, name, settings)
    return results


# -- memory ------------------------------------------------------------------------------------

#: The memory table's cases, one comparison (6 images) and the authors' ten seeds (60 images),
#: each at several max_batch_size values (None: all images in one batch).
MEMORY_CASES = {"one comparison": (1, (None, 3, 1)), "ten seeds": (10, (None, 30, 12, 6))}
#: What PyTorch can allocate on Colab's free GPU, a T4 (it shows 15,095 MiB, less about 350 MiB of
#: CUDA context, which PyTorch's allocator does not see).
T4_BUDGET_GIB = 14.4


def _run_seeds(pipe, num_seeds, max_batch_size, settings):
    blend_seeds(
        pipe, *PROMPTS, seeds=list(PAPER_SEEDS[:num_seeds]), max_batch_size=max_batch_size, progress=False, **settings
    )


def _cuda_peak(pipe, run) -> dict:
    """Peak memory and seconds of one run on a CUDA device; ``None`` peaks when it ran out of memory."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    torch.cuda.synchronize()
    started = time.perf_counter()
    try:
        run()
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return {"out_of_memory": True}
    torch.cuda.synchronize()
    return {
        "out_of_memory": False,
        "seconds": time.perf_counter() - started,
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
    }


def measure_memory(
    pipe, settings: dict, width_divisor: int | None, budget_gib: float | None = T4_BUDGET_GIB
) -> list[dict]:
    """Peak memory of :data:`MEMORY_CASES`: one row per case and ``max_batch_size``.

    On CUDA: PyTorch's peak allocated and reserved memory with the weights, and whether the run
    fits when the process may use only ``budget_gib`` (``set_per_process_memory_fraction``; a 16 GB
    T4 by default). On the CPU: the peak resident memory of a fresh process beyond the loaded model.
    """
    device = pipe._execution_device
    guided = settings.get("guidance_scale", 7.5) > 1
    rows = []
    for case, (num_seeds, sizes) in MEMORY_CASES.items():
        for max_batch_size in sizes:
            images = num_seeds * (2 + len(METHODS))
            batch = min(images, max_batch_size or images)
            row = {
                "case": case,
                "images": images,
                "max_batch_size": max_batch_size,
                "unet_rows_per_call": batch * (2 if guided else 1),
            }
            logger.info("memory: %s, max_batch_size %s", case, max_batch_size)
            if device.type == "cuda":
                row |= _cuda_peak(pipe, partial(_run_seeds, pipe, num_seeds, max_batch_size, settings))
            else:
                started = time.perf_counter()
                row["peak_resident_mb"] = _peak_rss_mb(width_divisor, _run_seeds, num_seeds, max_batch_size, settings)
                row["seconds"] = time.perf_counter() - started  # includes the fresh process's start and model build
            logger.info("memory row: %s", json.dumps(row))  # each row as it comes, should a later one fail
            rows.append(row)
    if device.type == "cuda" and budget_gib is not None:
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(budget_gib * 2**30 / total, device)
        try:
            for row in rows:
                num_seeds = MEMORY_CASES[row["case"]][0]
                capped = _cuda_peak(pipe, partial(_run_seeds, pipe, num_seeds, row["max_batch_size"], settings))
                row["fits_budget"] = not capped["out_of_memory"]
                logger.info(
                    "under %s GiB: %s, max_batch_size %s fits: %s",
                    budget_gib,
                    row["case"],
                    row["max_batch_size"],
                    row["fits_budget"],
                )
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, device)
    return rows


def _memory_table(report: dict) -> str:
    rows = report["results"]["memory"]
    on_cuda = "peak_allocated_gib" in next((r for r in rows if not r.get("out_of_memory")), {})
    budget = report.get("budget_gib")
    lines = [
        f"**{report['model']}**, {report['settings']['height']}x{report['settings']['width']}, "
        f"{report['settings']['num_inference_steps']} steps, guidance {report['settings']['guidance_scale']}, "
        f"{report['dtype']}, on {report['device_name']} ({report['date']})",
        "",
    ]
    if on_cuda:
        lines += [
            f"| comparison | images | max_batch_size | U-Net rows per call | peak allocated (GiB) | peak reserved (GiB) | seconds | fits {budget} GiB (16 GB T4) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
        ]
        for r in rows:
            peak = "out of memory" if r["out_of_memory"] else f"{r['peak_allocated_gib']:.1f}"
            reserved = "" if r["out_of_memory"] else f"{r['peak_reserved_gib']:.1f}"
            seconds = "" if r["out_of_memory"] else f"{r['seconds']:.1f}"
            fits = {True: "yes", False: "no", None: "n/a"}[r.get("fits_budget")]
            lines.append(
                f"| {r['case']} | {r['images']} | {r['max_batch_size'] or 'None (all)'} | {r['unet_rows_per_call']} | {peak} | {reserved} | {seconds} | {fits} |"
            )
    else:
        lines += [
            "| comparison | images | max_batch_size | U-Net rows per call | peak resident memory beyond the model (MB) |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for r in rows:
            lines.append(
                f"| {r['case']} | {r['images']} | {r['max_batch_size'] or 'None (all)'} | {r['unet_rows_per_call']} | {r['peak_resident_mb']:.0f} |"
            )
    scaling = report["results"].get("scaling")
    if scaling:
        lines += [
            "",
            f"Peak memory grows by about **{scaling['per_image']:.2f} {scaling['unit']} per image in a batch**, "
            f"on top of {scaling['base']:.2f} {scaling['unit']} (a least-squares line through the rows above).",
        ]
    return "\n".join(lines) + "\n"


def _scaling(rows: list[dict]) -> dict | None:
    """A least-squares line of peak memory against the images in one batch."""
    key, unit = (
        ("peak_allocated_gib", "GiB") if any("peak_allocated_gib" in r for r in rows) else ("peak_resident_mb", "MB")
    )
    points = [(min(r["images"], r["max_batch_size"] or r["images"]), r[key]) for r in rows if r.get(key) is not None]
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    return {"per_image": slope, "base": mean_y - slope * mean_x, "unit": unit}


def _table(report: dict) -> str:
    r = report["results"]
    names = list(r["seconds"])
    lines = [
        f"**{report['model']}**, {report['settings']['height']}x{report['settings']['width']}, "
        f"{report['settings']['num_inference_steps']} steps, {report['dtype']}, on {report['device_name']} "
        f"({report['date']}; median of {report['runs']} runs after a warm-up)",
        "",
        "| contender | U-Net rows | seconds per comparison | images per second | peak memory (MB) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        memory = r["peak_memory_mb"].get(name)
        lines.append(
            f"| {name} | {r['unet_rows'][name]} | {r['seconds'][name]:.2f} | {6 / r['seconds'][name]:.2f} | "
            f"{'n/a' if memory is None else f'{memory:.0f}'} |"
        )
    for name in ("minimum (6 images)", "authors' strategy"):
        lines.append(f"| {name} | {r['unet_rows'][name]} | | | |")
    speedup = r["seconds"][names[1]] / r["seconds"][names[0]]
    lines += ["", f"Speed-up of one batch over one call per image: **{speedup:.2f}x**."]
    if "tflops" in r:
        lines.append(
            f"U-Net throughput: {r['tflops']:.0f} TFLOP/s, {100 * r['fraction_of_peak']:.0f}% of the GPU's dense fp16 peak."
        )
    return "\n".join(lines) + "\n"


def measure_sweep(experiment_name: str = "toy", max_batch_size: int | None = None, repeats: int = 3) -> dict:
    """Images per second of ``blending sweep`` against ``blend`` called once per comparison, in
    one process with the same loaded model; then the command line with one process against two
    (``accelerate launch``, over gloo on the CPU), start-up and model loading included.
    ``max_batch_size`` defaults to the sweep's own default. Each time is the best of ``repeats``
    runs: other work on the machine only ever slows a run down."""
    import subprocess
    import tempfile

    from .experiments.runner import DEFAULT_MAX_BATCH_SIZE, run_sweep
    from .experiments.schema import comparisons, load_experiment
    from .sampling import blend

    max_batch_size = max_batch_size or DEFAULT_MAX_BATCH_SIZE
    experiment = load_experiment(experiment_name)
    pipe = load_pipeline(experiment.model)
    pipe.set_progress_bar_config(disable=True)
    work = Path(tempfile.mkdtemp())
    planned = comparisons(experiment)
    images = len(planned) * (2 + len(experiment.methods))
    results: dict = {
        "experiment": experiment_name,
        "comparisons": len(planned),
        "images": images,
        "max_batch_size": max_batch_size,
        "repeats": repeats,
    }

    def best(run) -> float:
        seconds = []
        for attempt in range(repeats):
            started = time.perf_counter()
            run(attempt)
            seconds.append(time.perf_counter() - started)
        return min(seconds)

    def sweep_in_process(attempt: int) -> None:
        out = work / f"in-process-{attempt}"
        run_sweep(experiment, out, pipe=pipe, max_batch_size=max_batch_size, progress=False)

    def blend_per_comparison(attempt: int) -> None:
        for c in planned:
            blend(
                pipe,
                c.prompt_1,
                c.prompt_2,
                experiment.methods,
                c.ratio,
                seed=c.seed,
                progress=False,
                num_inference_steps=experiment.num_inference_steps,
                guidance_scale=experiment.guidance_scale,
            )

    results["sweep_seconds"] = best(sweep_in_process)
    results["blend_per_comparison_seconds"] = best(blend_per_comparison)

    command = ["-m", "blending", "sweep", experiment_name, "--max-batch-size", str(max_batch_size)]
    threads = torch.get_num_threads()
    runs = {
        "1 process": ([sys.executable, *command], {"OMP_NUM_THREADS": str(threads)}),
        "2 processes": (
            [
                sys.executable,
                "-m",
                "accelerate.commands.launch",
                "--multi_gpu",
                "--num_processes",
                "2",
                "--num_machines",
                "1",
                "--mixed_precision",
                "no",
                "--dynamo_backend",
                "no",
                *command,
            ],
            {"OMP_NUM_THREADS": str(max(1, threads // 2)), "CUDA_VISIBLE_DEVICES": ""},
        ),
    }
    for name, (argv, env) in runs.items():
        folder = name.replace(" ", "-")
        results[f"command_seconds ({name})"] = best(
            lambda attempt, argv=argv, env=env, folder=folder: subprocess.run(
                [*argv, "--out", str(work / f"{folder}-{attempt}")],
                check=True,
                capture_output=True,
                env={**os.environ, **env},
            )
        )
    return results


def sweep_table(report: dict) -> str:
    r = report["results"]

    def rate(seconds: float) -> str:
        return f"{r['images'] / seconds:.2f}"

    lines = [
        f"Sweep throughput: the `{r['experiment']}` experiment ({r['comparisons']} comparisons, {r['images']} images), "
        f"{report['device_name']}, {report['date']}; each time the best of {r['repeats']} runs.",
        "",
        "| how | seconds | images per second |",
        "| --- | --- | --- |",
        f"| `run_sweep`, model loaded (chunks of seeds, max_batch_size {r['max_batch_size']}) | {r['sweep_seconds']:.1f} | {rate(r['sweep_seconds'])} |",
        f"| `blend` once per comparison, model loaded | {r['blend_per_comparison_seconds']:.1f} | {rate(r['blend_per_comparison_seconds'])} |",
    ]
    for name in ("1 process", "2 processes"):
        seconds = r[f"command_seconds ({name})"]
        lines.append(f"| `blending sweep`, {name}, start-up and loading included | {seconds:.1f} | {rate(seconds)} |")
    if report.get("note"):  # what the numbers alone do not say, e.g. a machine shared while measuring
        lines += ["", report["note"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blending.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small model and 3 runs: under 2 minutes on 2 CPU cores")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per contender (default 5; 3 with --quick)")
    parser.add_argument(
        "--width-divisor", type=int, default=None, help="divide SD's widths (default: 10 on cpu, 1 on cuda)"
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="image side in pixels (default: 128 on cpu, 64 with --quick, 512 on cuda)",
    )
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--compile", action="store_true", help="torch.compile the U-Net")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format for the U-Net")
    parser.add_argument("--out", type=Path, default=Path("benchmarks"), help="folder for the JSON and markdown results")
    parser.add_argument("--name", default=None, help="file name of the results (default: from the device and options)")
    parser.add_argument(
        "--memory",
        action="store_true",
        help="the memory table: peak memory of one comparison and of ten seeds at several max_batch_size",
    )
    parser.add_argument(
        "--budget-gib",
        type=float,
        default=T4_BUDGET_GIB,
        help="with --memory on cuda: the memory that the 'fits' column allows (default: a 16 GB T4's)",
    )
    parser.add_argument("--note", help="with --sweep: a sentence for the table, e.g. what else ran meanwhile")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="a sweep's images per second against blend per comparison, and 1 against 2 processes (CPU)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.sweep:
        report = {
            "device_name": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
            "date": time.strftime("%Y-%m-%d"),
            "versions": library_versions(),
            "results": measure_sweep(),
        }
        if args.note:
            report["note"] = args.note
        table = sweep_table(report)
        sys.stdout.write(table)
        name = args.name or "sweep-cpu"
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        (args.out / f"{name}.md").write_text(table)
        return 0

    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    divisor = args.width_divisor or (1 if on_gpu else 10)
    size = args.size or (512 if on_gpu else 64 if args.quick else 128)
    runs = args.runs or (3 if args.quick else 5)
    dtype = torch.float16 if on_gpu else torch.float32
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
    pipe = build_sd_shaped_pipeline(divisor, dtype, device, full_text_encoder=args.memory)
    optimize_unet(pipe, channels_last=args.channels_last, compile=args.compile)
    settings = {
        "seed": 0,
        "num_inference_steps": args.steps,
        "guidance_scale": 7.5,
        "height": size,
        "width": size,
        "output_type": "np",
    }
    logger.info("benchmarking %s at %dx%d on %s", pipe.name_or_path, size, size, device)
    if args.memory:
        settings.pop("seed")  # the cases draw the authors' seeds
        if on_gpu:
            _run_seeds(pipe, 1, None, settings)  # warm-up: kernels chosen and loaded before anything is timed
        rows = measure_memory(pipe, settings, None if on_gpu else divisor, args.budget_gib if on_gpu else None)
        results = {"memory": rows, "scaling": _scaling(rows)}
    else:
        results = measure(pipe, settings, runs, None if on_gpu else divisor)
    if on_gpu and not args.memory:
        rows = results["unet_rows"]["blending.blend (one batch)"]
        flop = rows * 0.677e12 * (size / 512) ** 2 * (1 if divisor == 1 else float("nan"))
        name = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), float("nan"))
        results["tflops"] = flop / results["seconds"]["blending.blend (one batch)"] / 1e12
        results["fraction_of_peak"] = results["tflops"] / peak
    report = {
        "model": pipe.name_or_path,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if on_gpu
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "dtype": str(dtype).removeprefix("torch."),
        "date": time.strftime("%Y-%m-%d"),
        "runs": runs,
        "options": {"compile": args.compile, "channels_last": args.channels_last, "quick": args.quick},
        "settings": settings,
        "versions": library_versions(),
        "results": results,
    }
    if args.memory:
        report["budget_gib"] = args.budget_gib if on_gpu else None
        report["total_gib"] = torch.cuda.get_device_properties(device).total_memory / 2**30 if on_gpu else None
    table = _memory_table(report) if args.memory else _table(report)
    sys.stdout.write(table)  # the command prints the table
    name = (
        args.name
        or f"{'gpu' if on_gpu else 'cpu'}{'-memory' if args.memory else ''}{'-quick' if args.quick else ''}{'-compile' if args.compile else ''}{'-channels-last' if args.channels_last else ''}"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{name}.md").write_text(table)
    logger.info("wrote %s/%s.json and .md", args.out, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
