"""Run the benchmark suite and write BENCHMARKS.md + benchmarks/results.json.

    python -m benchmarks.run                      # everything, full size (~1 h on a 2-core CPU)
    python -m benchmarks.run --quick              # real data, short runs, no 30-minute training
    python -m benchmarks.run --smoke --out DIR    # every benchmark tiny (synthetic data, seconds)
    python -m benchmarks.run --only sweep_overhead input_pipeline --repeats 5
    python -m benchmarks.run --device cuda --only gpu_path

Each benchmark runs ``--repeats`` times (time_to_accuracy at most twice: a seed each) and every figure is written as
min / median / max over the runs. Real runs merge into the existing results (a benchmark that ran
replaces its own figures; ``--fresh`` starts over); smoke runs write only to ``--out`` (default: a
new temporary folder). Figures measured with ``--device cuda`` get a ``_cuda`` suffix, so CPU and
GPU figures sit side by side.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, BenchContext, Run, busy_processes, git_commit, loadavg, machine

BENCHMARKS = {  # name -> module, in the order they run (the long one last)
    "sweep_overhead": "benchmarks.sweep_overhead",
    "input_pipeline": "benchmarks.input_pipeline",
    "study_throughput": "benchmarks.study_throughput",
    "driver_memory": "benchmarks.driver_memory",
    "short_trials": "benchmarks.short_trials",
    "dry_run": "benchmarks.dry_run",
    "report_1000": "benchmarks.report_1000",
    "report_10000": "benchmarks.report_10000",
    "gpu_path": "benchmarks.gpu_path",
    "char_rnn": "benchmarks.char_rnn",
    "pixel": "benchmarks.pixel",
    "time_to_accuracy": "benchmarks.time_to_accuracy",
}


def check_figure_names() -> None:
    """No two benchmarks may declare a figure of the same name (results would overwrite each other)."""
    owner: dict[str, str] = {}
    for name, module in BENCHMARKS.items():
        for key in getattr(importlib.import_module(module), "FIGURES", {}):
            if key in owner:
                raise SystemExit(f"figure {key!r} is declared by both {owner[key]} and {name}")
            owner[key] = name
SCHEMA = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--smoke", action="store_true", help="every benchmark tiny, on synthetic data (seconds each)")
    mode.add_argument("--quick", action="store_true", help="real data but short runs; skips the 30-minute training")
    p.add_argument("--only", nargs="+", choices=list(BENCHMARKS), metavar="NAME",
                   help=f"run only these benchmarks ({', '.join(BENCHMARKS)})")  # fmt: skip
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (and CPUs per sweep trial) of the timed trainings (default: all cores)")
    p.add_argument("--repeats", type=int, default=None, help="runs per benchmark (default 3; smoke 1)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for BENCHMARKS.md and results.json (default: the repository; smoke: a temp folder)")
    p.add_argument("--fresh", action="store_true", help="do not merge into existing results")
    p.add_argument("--render", action="store_true", help="only rewrite BENCHMARKS.md from results.json")
    args = p.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    return args


def output_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    """(BENCHMARKS.md, results.json)."""
    if args.out is None and not args.smoke:
        return REPO / "BENCHMARKS.md", REPO / "benchmarks" / "results.json"
    out = args.out or Path(tempfile.mkdtemp(prefix="raysweep-bench-smoke-"))
    out.mkdir(parents=True, exist_ok=True)
    return out / "BENCHMARKS.md", out / "results.json"


def keyed(key: str, device: str) -> str:
    """Figures measured on a GPU carry the device in their name."""
    return key if device == "cpu" or key.endswith(f"_{device}") else f"{key}_{device}"


def summarize(values: list[float]) -> dict[str, Any]:
    good = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    if not good:
        return {"min": None, "median": None, "max": None, "mean": None, "std": None, "runs": values}
    std = statistics.stdev(good) if len(good) > 1 else 0.0  # sample std: over seeds or repetitions
    return {"min": min(good), "median": statistics.median(good), "max": max(good), "mean": statistics.fmean(good),
            "std": std, "runs": values}  # fmt: skip


def run_benchmark(name: str, bc: BenchContext, repeats: int, say: Any) -> dict[str, Any]:
    """Run one benchmark ``repeats`` times; its entry for results.json."""
    mod = importlib.import_module(BENCHMARKS[name])
    repeats = min(repeats, getattr(mod, "MAX_REPEATS", repeats))
    commit, dirty = git_commit()
    entry: dict[str, Any] = {"status": "ok", "mode": bc.mode, "device": bc.device, "threads": bc.threads,
                             "repeats": repeats,
                             "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": commit, "dirty": dirty,
                             "load_before": loadavg(), "busy_before": busy_processes(),
                             "machine": machine()}  # fmt: skip
    runs: list[Run] = []
    t0 = time.perf_counter()
    try:
        for i in range(repeats):
            t1 = time.perf_counter()
            runs.append(mod.run(bc))
            say(f"  {name} run {i + 1}/{repeats}: {time.perf_counter() - t1:.1f} s  "
                + "  ".join(f"{k}={v:.4g}" for k, v in list(runs[-1].figures.items())[:4]))  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not lose the others
        entry["status"] = "error"
        entry["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()[-2000:]
        say(f"  {name} FAILED: {entry['error'].splitlines()[-1]}")
        traceback.print_exc()
    entry["seconds"] = time.perf_counter() - t0
    entry["load_after"] = loadavg()
    entry["runs_done"] = len(runs)
    keys = list(dict.fromkeys(k for r in runs for k in r.figures))
    units = getattr(mod, "FIGURES", {})
    entry["figures"] = {}
    for k in keys:
        base = k if k in units else next((u for u in units if k.startswith(u)), k)
        unit, meaning = units.get(base, ("", ""))
        entry["figures"][keyed(k, bc.device)] = {
            **summarize([r.figures.get(k, float("nan")) for r in runs]), "unit": unit, "description": meaning}
    entry["skipped"] = {keyed(k, bc.device): why for r in runs[-1:] for k, why in r.skipped.items()}
    entry["notes"] = list(dict.fromkeys(n for r in runs for n in r.notes))
    entry["details"] = [r.details for r in runs]
    return entry


def merge(path: Path, fresh: bool, new: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """results.json: earlier benchmarks kept unless rerun (or ``fresh``)."""
    old: dict[str, Any] = {}
    if path.exists() and not fresh:
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
    merged = {**old.get("benchmarks", {}), **new}
    order = list(BENCHMARKS)
    rank = {k: order.index(k.removesuffix("_cuda")) if k.removesuffix("_cuda") in order else len(order) for k in merged}
    benchmarks = {k: merged[k] for k in sorted(merged, key=rank.__getitem__)}  # a GPU entry beside its CPU entry
    figures: dict[str, Any] = {}
    skipped: dict[str, Any] = {}
    for bname, entry in benchmarks.items():
        for k, v in entry.get("figures", {}).items():
            figures[k] = {**v, "benchmark": bname}
        skipped.update(entry.get("skipped", {}))
    return {"schema": SCHEMA, **meta, "figures": figures, "skipped": skipped, "benchmarks": benchmarks}


def _fmt(v: Any) -> str:
    """A figure for the table: 4 significant digits under 10, so a ratio beside its target keeps the
    digit that decides it (1.105 against <= 1.10; 3 digits printed "1.1")."""
    if v is None:
        return "–"
    if isinstance(v, float):
        a = abs(v)
        return f"{v:.4g}" if a < 10 else f"{v:,.1f}" if a < 1000 else f"{v:,.0f}"
    return str(v)


def render_markdown(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    lines = ["# Benchmarks", "",
             f"Generated by `{results.get('command', 'python -m benchmarks.run')}` on {results.get('date', '?')}, "
             f"commit `{results.get('commit', '?')[:12]}`{' (uncommitted changes)' if results.get('dirty') else ''}.",
             "Each figure is min / median / max and mean ± sample std over the runs of its benchmark "
             "(`runs` column: the runs that count; a run marked invalid is listed in the notes); the "
             "machine-readable copy is `benchmarks/results.json`.", "",
             f"**Machine:** {m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs, {m.get('memory_gib', '?')} GiB, "
             f"GPU: {m.get('gpu') or 'none'}; Python {m.get('python', '?')}, torch {m.get('torch', '?')}, "
             f"ray {m.get('ray', '?')}, mlflow {m.get('mlflow', '?')}.", ""]  # fmt: skip
    if results.get("load_note"):
        lines += [f"> **Load conditions:** {results['load_note']}", ""]
    for bname, entry in results.get("benchmarks", {}).items():
        lines += [f"## {bname}", ""]
        lines.append(f"{entry.get('mode', '?')} mode, device {entry.get('device', '?')}, torch threads "
                     f"{entry.get('threads', '?')}, {entry.get('runs_done', 0)} run(s), "
                     f"{entry.get('seconds', 0):.0f} s, {entry.get('date', '?')}, commit "
                     f"`{str(entry.get('commit', '?'))[:12]}`; load average before/after "
                     f"{entry.get('load_before')} / {entry.get('load_after')}.")  # fmt: skip
        em = entry.get("machine")
        same = ("hostname", "cpu", "cpus", "gpu")  # hostnames repeat across VMs: the processor tells them apart
        if em and any(em.get(k) != m.get(k) for k in same):  # merged from a run elsewhere
            lines.append(f"Measured on another machine: {em.get('cpu', '?')}, {em.get('cpus', '?')} CPUs, GPU: "
                         f"{em.get('gpu') or 'none'}; Python {em.get('python', '?')}, torch {em.get('torch', '?')}.")
        if entry.get("busy_before"):
            lines.append(f"Other busy processes at the start: {', '.join(entry['busy_before'])}.")
        lines.append("")
        if entry.get("status") != "ok":
            lines += [f"**Failed:** `{entry.get('error', '').splitlines()[-1] if entry.get('error') else '?'}`", ""]
        if entry.get("figures"):
            lines += ["| figure | min | median | max | mean ± std | unit | runs | meaning |",
                      "|---|---:|---:|---:|---:|---|---:|---|"]  # fmt: skip
            for k, f in entry["figures"].items():
                n = sum(1 for v in f.get("runs", []) if isinstance(v, (int, float)) and math.isfinite(v))
                spread = f"{_fmt(f['mean'])} ± {_fmt(f['std'])}" if f.get("mean") is not None else "–"
                lines.append(f"| `{k}` | {_fmt(f['min'])} | **{_fmt(f['median'])}** | {_fmt(f['max'])} | {spread} | "
                             f"{f.get('unit', '')} | {n} | {f.get('description', '')} |")  # fmt: skip
            lines.append("")
        for k, why in entry.get("skipped", {}).items():
            lines.append(f"- `{k}` not measured: {why}")
        for note in entry.get("notes", []):
            lines.append(f"- {note}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def run_meta(argv: list[str] | None, bc: BenchContext, device: str, new: dict[str, Any]) -> dict[str, Any]:
    """The invocation's header in results.json: when, which commit, which machine, how loaded."""
    commit, dirty = git_commit()
    busy = sorted({b for e in new.values() for b in e.get("busy_before", [])})
    load = [e.get("load_before", []) for e in new.values()]
    meta = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": commit, "dirty": dirty, "machine": machine(),
            "command": "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:]),
            "mode": bc.mode, "device": device}  # fmt: skip
    note = os.environ.get("RAYSWEEP_BENCH_LOAD_NOTE", "")
    meta["load_note"] = note or (f"other processes were running ({', '.join(busy)}); load averages {load}"
                                 if busy else "")  # fmt: skip
    return meta


HAND_WRITTEN = "<!-- hand-written below: the history of the runs; python -m benchmarks.run keeps it -->"


def write_markdown(md_path: Path, results: dict[str, Any]) -> None:
    """Render ``results`` into ``md_path``, keeping its hand-written part (from ``HAND_WRITTEN`` on)."""
    old = md_path.read_text() if md_path.exists() else ""
    kept = old[old.index(HAND_WRITTEN):] if HAND_WRITTEN in old else ""
    md_path.write_text(render_markdown(results) + ("\n" + kept if kept else ""))


def write_results(md_path: Path, json_path: Path, results: dict[str, Any]) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1, default=str) + "\n")
    write_markdown(md_path, results)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_figure_names()
    say = lambda *a: print(*a, flush=True)  # noqa: E731
    names = args.only or [n for n in BENCHMARKS if not (args.quick and n == "time_to_accuracy")]
    repeats = args.repeats or (1 if args.smoke else 3)
    md_path, json_path = output_paths(args)
    if args.render:
        results = merge(json_path, False, {}, json.loads(json_path.read_text()))
        write_markdown(md_path, results)
        say(f"wrote {md_path}")
        return 0
    bc = BenchContext(smoke=args.smoke, quick=args.quick, device=args.device)
    if args.threads:
        bc.threads = args.threads
    say(f"benchmarks {', '.join(names)} ({bc.mode}, {args.device}, {bc.threads} threads, up to {repeats} run(s) "
        f"each) -> {md_path.parent}")
    new: dict[str, Any] = {}
    fresh = args.fresh or args.smoke
    for name in names:
        say(f"{name} ...")
        new[keyed(name, bc.device)] = run_benchmark(name, bc, repeats, say)  # a GPU run never replaces a CPU one
        # Written after every benchmark, so that a suite stopped midway (it runs ~2.5 h) keeps what it measured.
        write_results(md_path, json_path, merge(json_path, fresh, new, run_meta(argv, bc, args.device, new)))
        fresh = False  # `new` holds every entry of this invocation; later writes merge into it
    say(f"wrote {md_path} and {json_path}")
    if not os.environ.get("RAYSWEEP_BENCH_KEEP"):  # scratch: MLflow stores, Ray results, traces
        shutil.rmtree(bc.workdir, ignore_errors=True)
    return 0 if all(e["status"] == "ok" for e in new.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
