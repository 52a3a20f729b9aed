"""Pinned numeric paths: the embedded model draws the same bits under every forced CPU level.

Each drawing runs in a fresh process, since PyTorch, MKL and oneDNN read their switches once.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from blending.companion import numerics
from blending.companion.fingerprint import TOLERANCE, cell_means, largest_change, match_fingerprints

# seed 561's ALTERNATE blend is the picture that moved past the tolerance on another CPU
DRAW = """
import json, sys
import numpy as np
import torch
import blending
pipe = blending.load_pipeline("embedded")
pipe.set_progress_bar_config(disable=True)
result = blending.blend(pipe, "a large red circle", "a small blue square", seed=561, num_inference_steps=25,
                        output_type="np", progress=False, ratio=float(sys.argv[2]))
images = {"prompt_1": result.prompt_1, "prompt_2": result.prompt_2, **result.blends}
np.savez(sys.argv[1], **images)
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}))
"""

# what a CPU of each level does, emulated by each library's switch (see blending.companion.portability)
AVX2_CPU = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}

pytestmark = pytest.mark.skipif(not numerics.can_pin(), reason="the pinned paths need an x86-64 CPU with AVX2")


def draw(tmp_path, name: str, pinning: bool, ratio: float = 0.5, **switches) -> tuple[dict, dict]:
    environment = {k: v for k, v in os.environ.items() if k not in numerics.PINNED_ENVIRONMENT}
    environment.update(switches)
    if pinning:
        numerics.pin(environment)
    path = tmp_path / f"{name}.npz"
    finished = subprocess.run(
        [sys.executable, "-c", DRAW, str(path), str(ratio)], env=environment, capture_output=True, text=True
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    with np.load(path) as images:
        return {k: images[k] for k in images.files}, json.loads(finished.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def pinned_pictures(tmp_path_factory):
    return draw(tmp_path_factory.mktemp("pinned"), "reference", True)


@pytest.mark.slow
@pytest.mark.parametrize(
    "level",
    [
        {"OMP_NUM_THREADS": "1"},
        {"OMP_NUM_THREADS": "16", "MKL_NUM_THREADS": "16"},
        AVX2_CPU,
        {
            "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX",
            "ATEN_CPU_CAPABILITY": "avx512",
            "MKL_CBWR": "AUTO",
            "MKL_ENABLE_INSTRUCTIONS": "AVX512",
        },
    ],
    ids=["1 thread", "16 threads", "an AVX2 CPU", "AVX-512 and AMX asked for"],
)
def test_the_pinned_paths_draw_the_same_bits_at_every_level(tmp_path, pinned_pictures, level):
    """Whatever the machine's own level and thread count (as its environment says them), the pinned
    paths override them and draw the same bits."""
    reference, _ = pinned_pictures
    images, ran = draw(tmp_path, "level", True, **level)
    assert ran == {"capability": "AVX2", "threads": 2}
    for name in reference:
        assert np.array_equal(images[name], reference[name]), name


@pytest.mark.slow
def test_pinning_is_what_makes_them_equal(tmp_path, pinned_pictures):
    """Without the pins, the same CPU at the SSE level (another rounding altogether) draws other bits:
    the test above would catch a pin that did nothing."""
    reference, _ = pinned_pictures
    images, ran = draw(
        tmp_path,
        "sse",
        False,
        ATEN_CPU_CAPABILITY="default",
        ONEDNN_MAX_CPU_ISA="SSE41",
        MKL_CBWR="COMPATIBLE",
        OMP_NUM_THREADS="2",
    )
    assert ran["capability"] in ("DEFAULT", "NO AVX")  # older PyTorch names the default level "NO AVX"
    assert any(not np.array_equal(images[name], reference[name]) for name in reference)
    # Another rounding altogether (the stand-in for another architecture) moves this ALTERNATE
    # blend by about the tolerance (measured 0.025); a real change (ratio 0.6 for 0.5) moves the
    # blends several times as far, so the check tells the two apart.
    drift = max(largest_change(cell_means(reference[k]), images[k]) for k in reference)
    moved, _ = draw(tmp_path, "ratio", True, ratio=0.6)
    blends = [k for k in reference if k not in ("prompt_1", "prompt_2")]
    assert max(largest_change(cell_means(reference[k]), moved[k]) for k in blends) > max(3 * drift, 2 * TOLERANCE)


def test_pin_sets_each_switch_and_says_whether_it_could():
    environment = {}
    assert numerics.pin(environment) is True
    assert environment == numerics.PINNED_ENVIRONMENT and numerics.pinned(environment)


def test_pin_refuses_once_torch_has_loaded_unpinned():
    environment = {k: v for k, v in os.environ.items() if k not in numerics.PINNED_ENVIRONMENT}
    code = "import torch; from blending.companion import numerics; numerics.pin()"
    finished = subprocess.run([sys.executable, "-c", code], env=environment, capture_output=True, text=True)
    assert finished.returncode != 0
    assert "pin() must run before torch is imported" in finished.stderr


def test_unpinned_says_so_and_can_pin_follows_it(monkeypatch):
    monkeypatch.setenv(numerics.UNPINNED, "1")
    assert numerics.can_pin() is False
    assert numerics.pin({}) is False


def test_a_mismatch_says_where_the_pictures_were_drawn_and_checked(tmp_path):
    path = tmp_path / "chapter.json"
    image = np.zeros((16, 16, 3))
    recorded = {"grid": 8, "numeric_path": "x86_64, AVX512", "cell_means": {"a": cell_means(image).tolist()}}
    path.write_text(json.dumps(recorded))
    line = match_fingerprints({"a": image + 0.5}, path)
    assert line.startswith("1 of 1 pictures differ from their recorded fingerprints (largest cell change): a (0.50)")
    assert f"drawn on x86_64, AVX512, checked on {numerics.numeric_path()}" in line
    assert line.endswith("python -m blending.companion.figures redraws them")
    assert match_fingerprints({"a": image}, path).startswith("1 pictures match")


def test_the_numeric_path_names_what_pytorch_runs(monkeypatch):
    import torch

    assert numerics.numeric_path() == f"{numerics.platform.machine()}, pinned to AVX2"
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    assert numerics.numeric_path() == f"{numerics.platform.machine()}, {torch.backends.cpu.get_cpu_capability()}"


def test_the_portability_table_marks_what_moved_past_the_tolerance():
    from blending.companion.portability import table

    results = {
        "date": "2026-11-30",
        "machine": "x86_64",
        "tolerance": TOLERANCE,
        "levels": {
            "pinned": {
                "own": [
                    {"fingerprints": "a", "picture": "p", "change": 0.00005},
                    {"fingerprints": "b", "picture": "q", "change": 0.03},
                ],
                "other": [{"fingerprints": "a", "picture": "p", "change": 0.01}],
            }
        },
    }
    lines = table(results).splitlines()
    assert "| a (1 pictures) | 0 | 0.0100 |" in lines
    assert "| b (1 pictures) | **0.0300** (q) | not measured |" in lines


def test_a_portability_measurement_of_some_chapters_replaces_only_theirs():
    from blending.companion.portability import merge, table

    level = "SSE4.2, no AVX (another architecture's stand-in)"
    earlier = {
        "date": "2026-11-30",
        "levels": {
            "unpinned": {
                level: [
                    {"fingerprints": "01_methods", "picture": "a", "change": 0.01},
                    {"fingerprints": "03_comparison_grid", "picture": "b", "change": 0.03},
                ]
            }
        },
    }
    again = [{"fingerprints": "03_comparison_grid", "picture": "b", "change": 0.02}]
    merged = merge(earlier, "unpinned", level, again)
    assert merged["levels"]["unpinned"][level] == [earlier["levels"]["unpinned"][level][0], *again]
    assert merged["date"].startswith("2026-11-30 to ") or merged["date"] == "2026-11-30"
    pinned = merge(merged, "pinned", "AVX2", again)
    assert pinned["levels"]["unpinned"] == merged["levels"]["unpinned"] and pinned["levels"]["pinned"] == {
        "AVX2": again
    }
    assert table(pinned).index("| pinned |") < table(pinned).index("| unpinned |")  # pinned first, however merged
