"""raysweep's one command line: sweep, resume, report, ui, spaces, generate.

Input errors print one line and exit with status 2, before Ray or torch is imported.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from raysweep.data.errors import DataError
from raysweep.search_spaces import SpaceError


def _set_pair(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set expects NAME=VALUE[,VALUE...], got {text!r}")
    name, value = text.split("=", 1)
    return name.strip(), value.strip()


def _option_pair(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--option expects NAME=VALUE, got {text!r}")
    name, value = text.split("=", 1)
    return name.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    from raysweep.studies import STUDIES

    p = argparse.ArgumentParser(
        prog="raysweep",
        description="Deep-learning hyperparameter studies as Ray Tune sweeps, tracked in MLflow.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("sweep", help="run a study's search space as a Ray Tune sweep",
                       description="Run a study's search space as a Ray Tune sweep; every trial is a "
                                   "nested MLflow run under the sweep's parent run.")  # fmt: skip
    s.add_argument("study", help=f"one of: {', '.join(STUDIES)}")
    s.add_argument("--space", help="search space name (see `raysweep spaces`); default: quick")
    s.add_argument("--data", help="data source: hub id, local folder in the hub's layout, or 'synthetic' "
                                  "(default: $RAYSWEEP_DATA_DIR/<dataset> if present, else the hub)")  # fmt: skip
    s.add_argument("--experiment", help="MLflow experiment name (default: the study's name)")
    s.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                                          "else sqlite:///./mlflow.db)")  # fmt: skip
    s.add_argument("--storage-path", help="where Ray keeps sweep state and checkpoints; on a multi-node "
                                          "cluster a shared folder or s3:// URI (default ./ray_results)")  # fmt: skip
    s.add_argument("--search", default="grid", choices=["grid", "random", "optuna", "qmc"],
                   help="search algorithm (default grid)")
    s.add_argument("--scheduler", default="fifo", choices=["fifo", "asha"], help="trial scheduler")
    s.add_argument("--num-samples", type=int, default=1, help="trials to draw (random/optuna/qmc)")
    s.add_argument("--max-concurrent", type=int, default=0, help="max trials at once (0: by resources)")
    s.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs each trial holds")
    s.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs each trial holds; fractions (0.25) let small trials share a GPU")
    s.add_argument("--epochs", type=int, help="epochs per trial (default: the space's)")
    s.add_argument("--seed", type=int, default=0, help="first seed")
    s.add_argument("--repeats", type=int, default=1, help="seeds per configuration")
    s.add_argument("--patience", type=int, default=5, help="early stopping patience in epochs (val loss)")
    s.add_argument("--max-failures", type=int, default=2, help="retries of a crashed trial")
    s.add_argument("--set", dest="overrides", type=_set_pair, action="append", default=[],
                   metavar="NAME=V[,V...]", help="replace a hyperparameter's values in the space")
    s.add_argument("--option", dest="options", type=_option_pair, action="append", default=[],
                   metavar="NAME=VALUE", help="study runtime option (e.g. val_fraction=0.1)")
    s.add_argument("--address", help="Ray cluster to attach to ('auto' or ray://host:10001); "
                                     "default starts Ray in-process")  # fmt: skip
    s.add_argument("--name", help="sweep name (default study-space-time)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"],
                   help="bf16 autocast: auto = on CUDA only; bf16 also speeds up CPUs with AMX (about 2x)")

    sub.add_parser("spaces", help="list every study with its search spaces")
    return p


def _parse_option(value: str) -> object:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def cmd_sweep(args: argparse.Namespace) -> int:
    from raysweep.sweep import SweepOptions, run_sweep

    opts = SweepOptions(
        study=args.study, space=args.space, data=args.data, experiment=args.experiment,
        tracking_uri=args.tracking_uri, storage_path=args.storage_path, search=args.search,
        scheduler=args.scheduler, num_samples=args.num_samples, max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, epochs=args.epochs,
        seed=args.seed, repeats=args.repeats, patience=args.patience, max_failures=args.max_failures,
        overrides=dict(args.overrides), options={k: _parse_option(v) for k, v in args.options},
        address=args.address, name=args.name, device=args.device, amp=args.amp,
    )  # fmt: skip
    from raysweep.sweep import plan_sweep

    plan_sweep(opts)  # every input check, before data, MLflow or Ray
    result = run_sweep(opts)
    return 0 if result.status == "FINISHED" else 1


def cmd_spaces(args: argparse.Namespace) -> int:
    from raysweep.studies import STUDIES

    for study in STUDIES.values():
        print(f"{study.name}: {study.description} (ranks trials by {study.metric}, {study.mode})")
        for space in study.spaces.values():
            print(f"  {space.name:<16} {space.summary()}")
    return 0


COMMANDS = {"sweep": cmd_sweep, "spaces": cmd_spaces}


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (SpaceError, DataError) as exc:
        print(f"raysweep: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("raysweep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
