"""A scripted trainable that holds one trial at an epoch until the test opens a gate (imported by
Ray workers too): a SIGKILL then lands while that trial is known to be at that epoch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fakes import ScriptedTask

from raysweep.training import TrialContext, run_trial


class GatedTask(ScriptedTask):
    """``ctx.options``: ``gate_dir`` and ``gate_filters``: the trial with that many filters, before
    training epoch index ``gate_epoch`` (default 1: after reporting epoch 1 and its checkpoint),
    writes ``<gate_dir>/waiting`` and waits for ``<gate_dir>/open``."""

    def train_epoch(self, epoch: int) -> dict[str, float]:
        opts = self.ctx.options
        if self.config["filters"] == opts.get("gate_filters") and epoch == opts.get("gate_epoch", 1):
            gate = Path(opts["gate_dir"])
            (gate / "waiting").touch()
            while not (gate / "open").exists():
                time.sleep(0.1)
        return super().train_epoch(epoch)


def gated_trainable(config: dict[str, Any], ctx: TrialContext) -> None:
    run_trial(GatedTask, config, ctx)
