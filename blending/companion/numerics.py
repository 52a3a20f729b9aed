"""Pinned CPU numerics: the embedded model draws the same bits on every x86-64 CPU with AVX2.

CPU libraries choose their kernels by instruction set: PyTorch's own vectorised kernels (ATen),
Intel MKL's matrix products and oneDNN's convolutions each take an AVX2 or an AVX-512 path
(AMX, VNNI, ...) by what the CPU offers, and the paths round differently. The same code then draws
other bits on another CPU, and a blend that amplifies float noise (ALTERNATE) moves past the
fingerprints' tolerance. Each library has a documented switch that caps its path:

- ``ATEN_CPU_CAPABILITY``: PyTorch's dispatch level (``default``, ``avx2``, ``avx512``);
- ``MKL_CBWR``: MKL's conditional numerical reproducibility, the branch every CPU runs
  (``STRICT``: the same bits whatever the number of threads), and ``MKL_ENABLE_INSTRUCTIONS``,
  the most MKL's dispatch may use (which an environment could otherwise raise past the branch);
- ``ONEDNN_MAX_CPU_ISA``: the most oneDNN's JIT kernels may use;
- ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``: how a reduction is split between threads.

:data:`PINNED_ENVIRONMENT` sets the ISA switches to AVX2, the level every x86-64 CPU of the last
decade has, and the threads to 2. Where figures are drawn and checked (``python -m blending.companion.figures``, its ``--check``, nbval
and the tests that compare with committed results) :func:`pin` puts it into the environment before
PyTorch loads, and the notebooks' kernels inherit it. Another architecture (Apple silicon,
aarch64) cannot take these paths: there the fingerprints' tolerance is what holds, and the
byte-for-byte rerun check is skipped with one line. ``python -m blending.companion.numerics`` prints what
this machine does.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from collections.abc import MutableMapping

__all__ = [
    "PINNED_ENVIRONMENT",
    "UNPINNED",
    "can_pin",
    "cpu_capability",
    "numeric_path",
    "pin",
    "pinned",
    "pinned_children",
]

#: The switches that make the numeric paths those of an AVX2 CPU, whatever the CPU.
PINNED_ENVIRONMENT = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    # measured: an environment that sets MKL_ENABLE_INSTRUCTIONS=AVX512 still moves a picture by
    # 0.015 under MKL_CBWR alone (benchmarks/cpu-levels.md); this cap overrides it
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    # measured: with the three above, 1 thread and 2 threads still differ in 13 of 60 pictures
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
}

#: Set to 1, this environment variable keeps the CPU's own paths, for measuring what pinning
#: changes (``python -m blending.companion.portability``) and never for drawing committed figures.
UNPINNED = "BLENDING_UNPINNED"


def can_pin() -> bool:
    """Whether this machine can take the pinned paths: an x86-64 CPU with AVX2."""
    if os.environ.get(UNPINNED) == "1":
        return False
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(line.startswith("flags") and " avx2" in line for line in cpuinfo)
    except OSError:  # not Linux: every x86-64 Mac and PC of the last decade has AVX2
        return True


def pinned(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether ``environ`` (default: this process's) holds the pinned switches."""
    environ = os.environ if environ is None else environ
    return all(environ.get(key) == value for key, value in PINNED_ENVIRONMENT.items())


def pin(environ: MutableMapping[str, str] | None = None, *, check_torch: bool = True) -> bool:
    """Put :data:`PINNED_ENVIRONMENT` into ``environ`` (default: this process's); return whether
    it did (False where the machine cannot take the pinned paths).

    The libraries read the switches when they first compute, so this process's own pin must come
    before PyTorch does any work; a ``RuntimeError`` says so when PyTorch is already loaded
    unpinned (``check_torch=False`` skips that, for a process that only starts others). Processes
    started afterwards (notebook kernels) inherit it.
    """
    environ = os.environ if environ is None else environ
    if not can_pin():
        return False
    if check_torch and environ is os.environ and "torch" in sys.modules and not pinned(environ):
        raise RuntimeError(
            "blending.companion.numerics.pin() must run before torch is imported: PyTorch, MKL and oneDNN read "
            f"their switches ({', '.join(PINNED_ENVIRONMENT)}) once"
        )
    environ.update(PINNED_ENVIRONMENT)
    return True


@contextlib.contextmanager
def pinned_children():
    """Within the block, processes started by this one (papermill's kernels) take the pinned
    paths; this process's own environment is restored afterwards."""
    before = {key: os.environ.get(key) for key in PINNED_ENVIRONMENT}
    pin(os.environ, check_torch=False)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def numeric_path() -> str:
    """The numeric path of this process in words, the same on every machine that takes the same
    path: ``"x86_64, pinned to AVX2"``, ``"x86_64, AVX512"``, ``"arm64"``."""
    machine = platform.machine()
    if machine.lower() not in ("x86_64", "amd64"):
        return machine
    if pinned():
        return f"{machine}, pinned to AVX2"
    if "torch" in sys.modules:
        return f"{machine}, {sys.modules['torch'].backends.cpu.get_cpu_capability()}"
    return f"{machine}, {cpu_capability()}"


def cpu_capability() -> str:
    """The highest level the CPU offers, as PyTorch names it, whatever ATEN_CPU_CAPABILITY says."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line.split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        return "x86_64"
    for level, needs in (("AVX512", ("avx512f", "avx512bw", "avx512vl", "avx512dq")), ("AVX2", ("avx2", "fma"))):
        if all(flag in flags for flag in needs):
            return level
    return "DEFAULT"


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--can-pin":
        return 0 if can_pin() else 1
    pinning = pin()
    import torch

    sys.stdout.write(f"this CPU: {platform.machine()}, {cpu_capability()}\n")
    sys.stdout.write(
        f"figures are drawn and checked on: {numeric_path()} (PyTorch: {torch.backends.cpu.get_cpu_capability()})\n"
    )
    if not pinning:
        sys.stdout.write(
            "not pinned: only x86-64 CPUs with AVX2 take the pinned paths; the fingerprints' tolerance holds\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
