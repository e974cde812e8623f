"""What every benchmark shares: the run settings, figures, phase timers, child processes, machine facts.

A benchmark is a module with ``NAME``, ``FIGURES`` (key -> unit, meaning) and ``run(bc)`` returning
one ``Run`` (its figures for one repetition, plus notes). ``benchmarks.run`` repeats it and writes
min / median / max of every figure.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
RESULT_PREFIX = "BENCH_RESULT "  # a child process's last stdout line: this prefix + JSON


@dataclass
class BenchContext:
    """How this invocation runs: tiny synthetic (smoke), real but short (quick), or full."""

    smoke: bool = False
    quick: bool = False  # real data, shortened runs (a first look; not the reference figures)
    device: str = "cpu"  # "cpu" or "cuda"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="raysweep-bench-")))
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def mode(self) -> str:
        return "smoke" if self.smoke else "quick" if self.quick else "full"

    def pick(self, smoke: Any, quick: Any, full: Any) -> Any:
        """The setting for this mode."""
        return smoke if self.smoke else quick if self.quick else full

    def data(self, name: str = "cifar10") -> str:
        """The data source for real runs: the local copy under $RAYSWEEP_DATA_DIR, else the hub id.

        Smoke runs always use the synthetic set.
        """
        if self.smoke:
            return "synthetic"
        root = os.environ.get("RAYSWEEP_DATA_DIR")
        if root and (Path(root) / name).exists():
            return str((Path(root) / name).resolve())
        return {"cifar10": "uoft-cs/cifar10"}.get(name, name)


@dataclass
class Run:
    """One repetition of a benchmark: figure key -> value, and what a reader should know."""

    figures: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # figure key -> why it was not measured
    details: dict[str, Any] = field(default_factory=dict)  # anything else worth keeping (JSON)


# --- timing -------------------------------------------------------------------------------------


class PhaseTimer:
    """Exclusive wall time per named phase: nested phases are not counted twice.

    ``timer.wrap(obj, "attr", "phase")`` times every call of ``obj.attr`` until ``restore()``.
    """

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.marks: dict[str, float] = {}  # name -> time.time() of an event
        self._stack: list[list[float]] = []  # [start, time spent in nested phases]
        self._patches: list[tuple[Any, str, Any]] = []

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        frame = [time.perf_counter(), 0.0]
        self._stack.append(frame)
        try:
            yield
        finally:
            self._stack.pop()
            elapsed = time.perf_counter() - frame[0]
            self.totals[name] = self.totals.get(name, 0.0) + elapsed - frame[1]
            self.counts[name] = self.counts.get(name, 0) + 1
            if self._stack:
                self._stack[-1][1] += elapsed

    def mark(self, name: str) -> None:
        self.marks[name] = time.time()

    def wrap(self, obj: Any, attr: str, name: str, mark: str | None = None) -> None:
        """Time every call of ``obj.attr`` as phase ``name``; ``mark``: also mark its first call's start."""
        original = getattr(obj, attr)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if mark and mark not in self.marks:
                self.mark(mark)
            with self.phase(name):
                return original(*args, **kwargs)

        own = vars(obj).get(attr)  # None: inherited, removed again on restore
        self._patches.append((obj, attr, own))
        setattr(obj, attr, timed)

    def restore(self) -> None:
        for obj, attr, own in reversed(self._patches):
            if own is None:
                delattr(obj, attr)
            else:
                setattr(obj, attr, own)
        self._patches.clear()

    def as_dict(self) -> dict[str, Any]:
        return {"totals": self.totals, "counts": self.counts, "marks": self.marks}


def timed_calls(fn: Callable[[], Any], seconds: float, warmup: int = 1, min_calls: int = 3) -> tuple[float, int]:
    """Call ``fn`` ``warmup`` times untimed, then until ``seconds`` passed; (elapsed, timed calls)."""
    for _ in range(warmup):
        fn()
    n, t0 = 0, time.perf_counter()
    while n < min_calls or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return time.perf_counter() - t0, n


# --- child processes ----------------------------------------------------------------------------


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a benchmark child (and of the Ray workers it starts).

    Absolute paths: Ray workers do not run in our working directory, and an installed raysweep
    elsewhere must not shadow this checkout.
    """
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # Ray in-process, never attached
    paths = [str(SRC), str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(str(Path(p).resolve()) for p in paths))
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.setdefault("RAY_AUTH_MODE", "disabled")
    env.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.update(extra or {})
    return env


def run_child(target: str, kwargs: dict[str, Any], timeout: float = 1800,
              env: dict[str, str] | None = None) -> tuple[dict[str, Any], float]:  # fmt: skip
    """Run ``module:function(**kwargs)`` in a fresh interpreter; (its JSON result, wall seconds).

    The wall time runs from spawning the process to its exit: interpreter start and imports count.
    """
    cmd = [sys.executable, "-m", "benchmarks.child", target, json.dumps(kwargs)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=str(REPO), env=child_env(env), capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise RuntimeError(f"benchmark child {target} failed (exit {proc.returncode}):\n{tail}")
    return json.loads(lines[-1][len(RESULT_PREFIX) :]), wall


# --- resources ----------------------------------------------------------------------------------


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process in MiB (from /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def busy_processes(min_cpu_s: float = 5.0) -> list[str]:
    """Other processes that used noticeable CPU recently (a hint that timings are contended)."""
    out = []
    me = os.getpid()
    try:
        ps = subprocess.run(["ps", "-eo", "pid,pcpu,comm", "--sort=-pcpu"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return out
    for line in ps.stdout.splitlines()[1:8]:
        parts = line.split(None, 2)
        if len(parts) == 3 and int(parts[0]) != me and float(parts[1]) >= min_cpu_s:
            out.append(f"{parts[2]} ({parts[1]}% CPU)")
    return out


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {"hostname": socket.gethostname(), "platform": platform.platform(),
                            "python": platform.python_version(), "cpus": os.cpu_count()}  # fmt: skip
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0]
        info["memory_gib"] = round(int(mem.split()[1]) / 1024**2, 1)
    import torch

    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    for mod in ("ray", "mlflow", "torchvision"):
        with contextlib.suppress(Exception):
            info[mod] = __import__(mod).__version__
    return info


OUTPUTS = ("BENCHMARKS.md", "benchmarks/results.json")  # what the suite writes: not a change to the code measured


def git_commit() -> tuple[str, bool]:
    """(commit of this checkout, whether its tracked files other than the suite's own outputs changed).

    The suite rewrites its outputs after every benchmark, so counting them would call every later
    benchmark of one invocation dirty."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *(f":(exclude){p}" for p in OUTPUTS)], cwd=REPO,
                               capture_output=True, text=True, timeout=5)  # fmt: skip
        return head.stdout.strip() or "unknown", bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def time_train_steps(task: Any, warmup: int, steps: int, timer: PhaseTimer | None = None) -> tuple[float, float]:
    """Images/s of ``task.train_epoch`` (a CnnTask) over ``steps`` steps after ``warmup`` untimed ones,
    and the seconds of the warm-up (it holds any compilation). Steps are capped at one epoch; ``timer``
    is reset when the timed steps start."""
    import torch

    per_epoch = max(1, len(task.train_idx) // task.batch_size)
    task.steps_per_epoch = max(1, min(warmup, per_epoch))
    t0 = time.perf_counter()
    task.train_epoch(0)  # ends with .item(): synchronized
    first = time.perf_counter() - t0
    task.steps_per_epoch = steps = max(1, min(steps, per_epoch))
    if task.device.type == "cuda":
        torch.cuda.synchronize()
    if timer is not None:
        timer.totals.clear()
    t0 = time.perf_counter()
    task.train_epoch(1)
    return steps * task.batch_size / (time.perf_counter() - t0), first


def with_trial_amp(task: Any) -> str:
    """Resolve ``task.ctx.amp`` as the training loop does for a trial ("auto": a per-node probe, cached),
    so that a benchmark times the precision a sweep would train in; returns it ("bf16" or "off")."""
    import dataclasses

    from raysweep.training.amp import resolve_amp

    amp, _ = resolve_amp(task.ctx.amp, task.device, task.model, task.batch_size, task.model_spec())
    task.ctx = dataclasses.replace(task.ctx, amp=amp)
    return amp


def cnn_task(bc: BenchContext, config: dict[str, Any], amp: str = "auto") -> Any:
    """The cnn study's ``CnnTask`` for ``config`` on the benchmark's data and device, seeded: what the
    CNN benchmarks time. ``amp="auto"``: the precision a trial of it would train in (``with_trial_amp``)."""
    from raysweep.trainables.cnn import CnnTask
    from raysweep.training import TrialContext, pick_device, seed_everything

    seed = int(config.get("seed", 0))
    seed_everything(seed)
    ctx = TrialContext(study="cnn", data=bc.data("cifar10"), epochs=1000, metric="val_acc", mode="max",
                       device=bc.device, amp=amp)  # fmt: skip
    task = CnnTask({**config, "seed": seed}, ctx, pick_device(bc.device))
    with_trial_amp(task)
    return task
