"""raysweep's one command line: sweep, resume, audit, report, ui, spaces, generate.

Input errors print one line and exit with status 2, before Ray or torch is imported.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from raysweep.analysis.errors import AnalysisError
from raysweep.data.errors import DataError
from raysweep.search_spaces import SpaceError, typed
from raysweep.tracking import TrackingUnavailable
from raysweep.ui import UIError


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
    s.add_argument("--space", help="a built-in space's name (see `raysweep spaces`; default: quick) or a space "
                                   "file PATH.yaml|.json|.toml (`raysweep spaces STUDY/SPACE --show` prints one)")
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
    s.add_argument("--num-samples", type=int, default=1,
                   help="configurations to draw (random/optuna/qmc), each trained with every seed of --repeats")
    s.add_argument("--max-concurrent", type=int, default=0, help="max trials at once (0: by resources)")
    s.add_argument("--cpus-per-trial", type=float,
                   help="CPUs each trial holds (default: the CPUs no other trial of the sweep can use, at least 1; "
                        "pixel: 1 for the trial itself; its Ray Train workers hold their own)")
    s.add_argument("--gpus-per-trial", type=float, default=0.0,
                   help="GPUs each trial holds; fractions (0.25) let small trials share a GPU "
                        "(pixel: GPUs per Ray Train worker)")
    s.add_argument("--epochs", type=int, help="epochs per trial (default: the space's)")
    s.add_argument("--seed", type=int, default=0, help="first seed")
    s.add_argument("--repeats", type=int, default=1,
                   help="seeds per configuration (--seed, --seed+1, ...), the same for every configuration")
    s.add_argument("--patience", type=int, default=5, help="early stopping patience in epochs (val loss)")
    s.add_argument("--max-failures", type=int, default=2, help="retries of a crashed trial")
    s.add_argument("--set", dest="overrides", type=_set_pair, action="append", default=[],
                   metavar="NAME=V[,V...]", help="replace a hyperparameter's values in the space: listed values "
                   "(optimizer=adam,sgd) or a distribution for random/qmc/optuna: uniform:LOW:HIGH, "
                   "loguniform:LOW:HIGH, int:LOW:HIGH[:log] (lr=loguniform:1e-4:1e-1, layers=int:3:9)")
    s.add_argument("--option", dest="options", type=_option_pair, action="append", default=[],
                   metavar="NAME=VALUE", help="study runtime option (e.g. val_fraction=0.1; pixel: workers=N, "
                                              "worker_cpus=X, samples=N, lossless=PATH)")
    s.add_argument("--address", help="Ray cluster to attach to ('auto' or ray://host:10001); "
                                     "default starts Ray in-process")  # fmt: skip
    s.add_argument("--name", help="sweep name (default study-space-time)")
    s.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    s.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"],
                   help="bf16 autocast: auto = on CUDA, and on a CPU where a one-off probe finds it faster "
                        "for the model (cached per node); bf16 = always; off = fp32")
    s.add_argument("--dry-run", action="store_true",
                   help="print the trials, resources per trial, trials at once, time per trial and in all "
                        "(a few real training steps of each model shape timed on this node), peak memory "
                        "and checkpoint disk; trains nothing to the end and writes no MLflow run")
    s.add_argument("--quiet", action="store_true", help="no progress lines: print only the summary")

    r = sub.add_parser("resume", help="continue an interrupted sweep (or run what an extended space adds)",
                       description="Continue sweep NAME under its MLflow parent run: finished configurations "
                                   "are not rerun, unfinished ones continue from their last checkpoint. "
                                   "--set extends a grid; only new configurations run.")  # fmt: skip
    r.add_argument("name", help="the sweep name `raysweep sweep` printed (tag raysweep.sweep_name)")
    r.add_argument("--tracking-uri", help="MLflow tracking URI of the sweep")
    r.add_argument("--set", dest="overrides", type=_set_pair, action="append", default=[],
                   metavar="NAME=V[,V...]", help="replace a hyperparameter's values (e.g. extend a grid)")
    r.add_argument("--address", help="Ray cluster to attach to")
    r.add_argument("--max-failures", type=int, help="retries of a crashed trial")

    a = sub.add_parser("audit", help="train to the end the best trials a scheduler stopped early, and say "
                                     "whether early stopping cost the sweep its winner",
                       description="Train the K configurations (best at their rung) that a scheduler stopped in "
                                   "sweep NAME to the end, as sweep audit-NAME with NAME's options and seeds, and "
                                   "compare each with NAME's winner (paired by seed).")  # fmt: skip
    a.add_argument("name", help="the audited sweep's name (tag raysweep.sweep_name)")
    a.add_argument("--top", type=int, default=3, help="configurations to audit (default 3)")
    a.add_argument("--tracking-uri", help="MLflow tracking URI of the sweep")
    a.add_argument("--address", help="Ray cluster to attach to")
    a.add_argument("--dry-run", action="store_true", help="print what the audit would train and cost; train nothing")
    a.add_argument("--quiet", action="store_true", help="no progress lines")

    r = sub.add_parser("report", help="regenerate the report's tables and figures from an experiment's runs",
                       description="Write every table (Markdown, CSV, LaTeX) and figure (PNG) of the studies "
                                   "in an MLflow experiment, plus report.md, and log them as a run.")  # fmt: skip
    r.add_argument("--experiment", required=True, help="MLflow experiment name (a sweep's --experiment)")
    r.add_argument("--out", help="output folder (default ./report/<experiment>)")
    r.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                                          "else sqlite:///./mlflow.db)")  # fmt: skip
    r.add_argument("--against", metavar="REFERENCE",
                   help="'report' (the packaged source report) or a reference file: its numbers beside each table, "
                        "its claims with verdicts (holds / does not hold / not comparable / inconsistent in the "
                        "report / cannot tell)")  # fmt: skip

    x = sub.add_parser("reproduce", help="run every study's report spaces, then the report against its source",
                       description="Run the cnn, char_rnn and pixel report spaces as sweeps at one scale, then write "
                                   "the combined report against the source report. Rerunning with the same --name "
                                   "continues: finished sweeps and trials are not rerun.")  # fmt: skip
    x.add_argument("--scale", required=True, choices=["smoke", "cpu", "paper"],
                   help="smoke: synthetic data, minutes; cpu: real data, <= 2 h on 2 cores, 2 seeds; "
                        "paper: the report's protocol (20 epochs, 32x32), for GPUs")  # fmt: skip
    x.add_argument("--name", help="prefix of the sweeps' names (default reproduce-<scale>); reuse it to resume")
    x.add_argument("--experiment", help="MLflow experiment (default: the name)")
    x.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                                          "else sqlite:///./mlflow.db)")  # fmt: skip
    x.add_argument("--storage-path", help="where Ray keeps sweep state and checkpoints (default ./ray_results)")
    x.add_argument("--out", help="report folder (default ./report/<experiment>)")
    x.add_argument("--dry-run", action="store_true", help="each sweep's --dry-run and their sum; trains nothing")
    x.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")

    u = sub.add_parser("ui", help="start the MLflow UI on the tracking store (127.0.0.1)",
                       description="Start the MLflow UI on the same store, print its URL and each "
                                   "experiment's runs-table link; Ctrl-C stops it.")  # fmt: skip
    u.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                                          "else sqlite:///./mlflow.db)")  # fmt: skip
    u.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default 5000)")

    sp = sub.add_parser("spaces", help="list every study with its search spaces (--show: one as a space file)",
                        description="List every study's search spaces and what each varies; with STUDY/SPACE and "
                                    "--show, print that space as a YAML space file to copy, edit and run with "
                                    "`raysweep sweep STUDY --space FILE.yaml`.")  # fmt: skip
    sp.add_argument("target", nargs="?", metavar="STUDY[/SPACE]", help="one study, or one of its spaces")
    sp.add_argument("--show", action="store_true", help="print STUDY/SPACE as a YAML space file")

    g = sub.add_parser("generate", help="continue a seed text with a char_rnn trial's best weights",
                       description="Load model/best.pt, model/spec.json and model/tokenizer.json of a char_rnn "
                                   "trial run and print the seed text followed by sampled text (at least 10 "
                                   "words); the same --seed gives the same text.")  # fmt: skip
    g.add_argument("--run", required=True, metavar="RUN_ID", help="MLflow run id of a char_rnn trial")
    g.add_argument("--seed-text", help="text to continue (default: the run's own --option seed_text, "
                                       'else "To be or not to")')
    g.add_argument("--length", type=int, default=200, help="tokens to sample at least (default 200)")
    g.add_argument("--temperature", type=float, default=0.8, help="softmax temperature; 0 is greedy (default 0.8)")
    g.add_argument("--top-k", type=int, default=0, help="sample among the k most likely tokens (default 0: all)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    g.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                                          "else sqlite:///./mlflow.db)")  # fmt: skip
    return p


def cmd_sweep(args: argparse.Namespace) -> int:
    from raysweep.sweep import SweepOptions, run_sweep

    opts = SweepOptions(
        study=args.study, space=args.space, data=args.data, experiment=args.experiment,
        tracking_uri=args.tracking_uri, storage_path=args.storage_path, search=args.search,
        scheduler=args.scheduler, num_samples=args.num_samples, max_concurrent=args.max_concurrent,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, epochs=args.epochs,
        seed=args.seed, repeats=args.repeats, patience=args.patience, max_failures=args.max_failures,
        overrides=dict(args.overrides), options={k: typed(v) for k, v in args.options},
        address=args.address, name=args.name, device=args.device, amp=args.amp, quiet=args.quiet,
    )  # fmt: skip
    from raysweep.sweep import dry_run_sweep, plan_sweep

    plan_sweep(opts)  # every input check, before data, MLflow or Ray
    if args.dry_run:
        dry_run_sweep(opts)
        return 0
    return exit_status(run_sweep(opts).status)


def cmd_resume(args: argparse.Namespace) -> int:
    from raysweep.sweep import resume_sweep

    changes = {k: v for k, v in {"address": args.address, "max_failures": args.max_failures}.items() if v is not None}
    result = resume_sweep(args.name, args.tracking_uri, dict(args.overrides), **changes)
    return exit_status(result.status)


def exit_status(sweep_status: str) -> int:
    """0 for a finished sweep, 130 for an interrupted one (KILLED: Ctrl-C, as a shell reports it), else 1."""
    return {"FINISHED": 0, "KILLED": 130}.get(sweep_status, 1)


def cmd_audit(args: argparse.Namespace) -> int:
    from raysweep.sweep.audit import audit_sweep

    changes = {k: v for k, v in {"address": args.address, "quiet": args.quiet or None}.items() if v is not None}
    res = audit_sweep(args.name, args.tracking_uri, args.top, dry_run=args.dry_run,
                      say=lambda s: print(s, flush=True), **changes)  # fmt: skip
    return 0 if res is None or res.status == "FINISHED" else 1


def cmd_spaces(args: argparse.Namespace) -> int:
    from raysweep.search_spaces import space_to_yaml
    from raysweep.studies import STUDIES, get_study

    name, _, space_name = (args.target or "").partition("/")
    if args.show and not space_name:
        raise SpaceError("--show prints one space: name it as STUDY/SPACE, e.g. raysweep spaces cnn/tune_lr --show")
    studies = [get_study(name)] if name else list(STUDIES.values())
    if space_name:
        space = studies[0].space(space_name)
        if args.show:
            print(space_to_yaml(space, studies[0].name), end="")
        else:
            print(f"{studies[0].name}/{space.name}: {space.summary()}")
        return 0
    for study in studies:
        print(f"{study.name}: {study.description} (ranks trials by {study.metric}, {study.mode})")
        for space in study.spaces.values():
            print(f"  {space.name:<16} {space.summary()}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from raysweep.analysis import build_report

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line per item instead
    from raysweep.text import plural

    res = build_report(args.experiment, args.tracking_uri, args.out, say=lambda s: print(s, flush=True),
                       against=args.against)  # fmt: skip
    n = res.counts
    print(f"report: {res.report_md} ({plural(n['table'], 'table')}, {plural(n['figure'] + n['image'], 'figure')}, "
          f"{len(res.skipped)} skipped, {len(res.failed)} failed); logged as MLflow run {res.run_id} "
          f"in experiment {args.experiment!r}")  # fmt: skip
    return 1 if res.failed else 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from raysweep.reproduce import reproduce

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return reproduce(args.scale, name=args.name, experiment=args.experiment, tracking_uri=args.tracking_uri,
                     out=args.out, storage_path=args.storage_path, dry_run=args.dry_run, quiet=args.quiet,
                     say=lambda s: print(s, flush=True))  # fmt: skip


def cmd_ui(args: argparse.Namespace) -> int:
    from raysweep.ui import serve

    return serve(args.tracking_uri, args.port, say=lambda s: print(s, flush=True))


def cmd_generate(args: argparse.Namespace) -> int:
    checks = [
        (args.seed_text is None or bool(args.seed_text), "--seed-text must not be empty"),
        (args.length >= 1, f"--length must be >= 1, got {args.length}"),
        (args.temperature >= 0 and args.temperature == args.temperature,
         f"--temperature must be >= 0, got {args.temperature}"),
        (args.top_k >= 0, f"--top-k must be >= 1 (or 0: all tokens), got {args.top_k}"),
    ]  # fmt: skip
    for ok, msg in checks:
        if not ok:
            raise SpaceError(msg)
    from raysweep.analysis.generate import generate_from_run

    print(generate_from_run(args.run, args.tracking_uri, args.seed_text, length=args.length,
                            temperature=args.temperature, top_k=args.top_k or None, seed=args.seed))  # fmt: skip
    return 0


COMMANDS = {"sweep": cmd_sweep, "resume": cmd_resume, "spaces": cmd_spaces, "report": cmd_report, "ui": cmd_ui,
            "generate": cmd_generate, "audit": cmd_audit, "reproduce": cmd_reproduce}


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (SpaceError, DataError, AnalysisError, UIError) as exc:
        print(f"raysweep: error: {exc}", file=sys.stderr)
        return 2
    except TrackingUnavailable as exc:  # the tracking server stayed away through MLflow's retries
        print(f"raysweep: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("raysweep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
