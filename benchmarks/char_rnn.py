"""char-rnn benchmark: LSTM training throughput, and the validation loss 10 minutes of CPU buy.

Keys filled by ``measure(smoke, out)`` (``run(bc)``: the suite's entry, ``python -m benchmarks.run``):

- ``char_lstm_train_chars_per_s``: training characters per second (forward, backward, clipping,
  AdamW step) of the ``fast`` space's configuration on the real text, in the precision its trial
  picks (``--amp auto``), torch using every core of the machine;
- ``char_val_loss_10min_cpu``: the best validation loss (nats/char, temporal split) that
  configuration reaches when its run is sized to 10 minutes of that training: the measured
  throughput sets the epochs' length, the learning rate warms up and decays over the whole run,
  and the shared training loop (``run_trial``) trains it. The report's best is 1.585 (ln 4.88).

``smoke=True`` runs the same path on the synthetic text in seconds (numbers meaningless).
Standalone: ``python benchmarks/char_rnn.py [--smoke] [--budget-s S]`` prints the keys as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

BUDGET_S = 600.0  # the 10 minutes of the benchmark's name
EPOCHS = 10  # validation passes in the budgeted run (each ~111k characters forward: ~1 % of 10 minutes),
# more where ten epochs of one pass each take less than the budget
SMOKE_BUDGET_S = 3.0


SPACE = "fast"  # the char_rnn space shipped for this budget


def _config() -> dict[str, Any]:
    """The ``fast`` space's one configuration (temporal split)."""
    from raysweep.search_spaces import configs_of
    from raysweep.search_spaces.char_rnn import SPACES

    (config,) = configs_of(SPACES[SPACE])
    return config


def size_run(budget_s: float, eval_s: float, chars_per_s: float, pass_tokens: int) -> tuple[int, int]:
    """(epochs, tokens per epoch) whose training and validation fill ``budget_s``, validation <= 10 % of it.

    An epoch is at most one pass over the training windows (``pass_tokens``, ~2.0M on the real text):
    where EPOCHS epochs would each need more, the run has more epochs of one pass. (Sized without that
    cap, a "10-minute" run trained for 322-374 s on the Xeon of 2026-12-04: ten capped epochs.)
    """
    epochs = max(1, min(EPOCHS, int(0.1 * budget_s / eval_s)))
    epoch_tokens = int((budget_s / epochs - eval_s) * chars_per_s)
    if epoch_tokens > pass_tokens:
        epochs = max(1, int(budget_s / (eval_s + pass_tokens / chars_per_s)))
        epoch_tokens = pass_tokens
    return epochs, epoch_tokens


def measure(smoke: bool, out: dict, budget_s: float | None = None) -> None:
    import torch

    from benchmarks.common import with_trial_amp
    from raysweep.data.shakespeare import prepare
    from raysweep.trainables.char_rnn import CharRnnTask
    from raysweep.training import LocalSession, TrialContext, run_trial, seed_everything

    budget = float(budget_s if budget_s is not None else SMOKE_BUDGET_S if smoke else BUDGET_S)
    cpus = os.cpu_count() or 1
    torch.set_num_threads(cpus)
    source, _ = prepare("synthetic" if smoke else None)  # real text: $RAYSWEEP_DATA_DIR, else the hub
    config = _config()
    if smoke:
        config.update(hidden_size=32, embed_dim=16, seq_len=64, batch_size=16)
    options = {"sample_every": 0}

    # 1. throughput: a warm-up epoch and validation pass (kernel choice, allocation), then the same timed
    probe_tokens = 4_000 if smoke else 300_000
    ctx = TrialContext(study="char_rnn", data=source, epochs=1, metric="val_loss", mode="min", device="cpu",
                       options=options)  # fmt: skip
    seed_everything(0)
    task = CharRnnTask({**config, "epoch_tokens": probe_tokens}, ctx, torch.device("cpu"))
    amp = with_trial_amp(task)  # the precision run_trial will pick below
    task.train_epoch(0)
    task.evaluate()
    t0 = time.perf_counter()
    task.train_epoch(1)
    chars_per_s = task.steps_per_epoch * task.batch_size * task.seq_len / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    task.evaluate()
    eval_s = time.perf_counter() - t0
    out["char_lstm_train_chars_per_s"] = round(chars_per_s)

    # 2. the budgeted run
    epochs, epoch_tokens = size_run(budget, eval_s, chars_per_s, len(task.train) * task.seq_len)
    epoch_tokens = max(config["seq_len"], epoch_tokens)
    ctx = TrialContext(study="char_rnn", data=source, epochs=epochs, metric="val_loss", mode="min", device="cpu",
                       patience=epochs, options=options)  # fmt: skip
    session = LocalSession(name="bench-char-rnn", cpus=cpus)
    t0 = time.perf_counter()
    last = run_trial(CharRnnTask, {**config, "epoch_tokens": epoch_tokens}, ctx, session)
    wall = time.perf_counter() - t0
    out["char_val_loss_10min_cpu"] = round(float(last["best_val_loss"]), 4)
    out["char_10min_cpu_wall_s"] = round(wall, 1)
    detail = {"config": {**config, "epoch_tokens": epoch_tokens}, "amp": amp, "epochs": epochs, "budget_s": budget,
              "cpus": cpus, "val_loss_per_epoch": [round(r["val_loss"], 4) for r in session.results],
              "test_loss": round(last["test_loss"], 4), "data": source}  # fmt: skip
    print(f"char_rnn benchmark: {json.dumps(detail)}", file=sys.stderr, flush=True)


NAME = "char_rnn"
FIGURES = {
    "char_lstm_train_chars_per_s": ("char/s", "the fast space's LSTM, training characters per second"),
    "char_val_loss_10min_cpu": ("nats/char", "best temporal-split val loss after a 10-minute budget (target <= 1.55)"),
    "char_10min_cpu_wall_s": ("s", "wall time of the budgeted run"),
}


def run(bc: Any) -> Any:
    """The suite's entry: budgets by mode (smoke 3 s, quick 60 s, full 600 s)."""
    from benchmarks.common import Run

    out: dict[str, Any] = {}
    budget = bc.pick(SMOKE_BUDGET_S, 60.0, BUDGET_S)
    measure(bc.mode == "smoke", out, budget)
    r = Run(figures={k: float(v) for k, v in out.items() if k in FIGURES})
    if bc.mode != "full":
        r.notes.append(f"{bc.mode}: budget {budget:g} s, not the 10 minutes of the name")
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="synthetic text, seconds")
    p.add_argument("--budget-s", type=float, help=f"training budget (default {BUDGET_S:g}; smoke {SMOKE_BUDGET_S:g})")
    args = p.parse_args()
    out: dict = {}
    measure(args.smoke, out, args.budget_s)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
