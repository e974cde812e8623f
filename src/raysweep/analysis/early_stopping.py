"""The early-stopping decisions of a study's sweeps: which trials a scheduler stopped, and why.

Why a table of its own: a stopped trial's score is its score at the rung, not at the end, so it
cannot be ranked beside finished trials without saying so. Each row is one stop as the scheduler
recorded it on the trial's run (``raysweep.stop.*`` tags, ``sweep.asha.Decision``): the rung
(epoch), the metric there, the rung's cut-off and how many trials that cut-off came from.
``raysweep audit`` trains the best of them to the end.
"""

from __future__ import annotations

import pandas as pd

from raysweep import tracking
from raysweep.analysis import select
from raysweep.analysis.registry import ANY_STUDY, Skip, StudyRuns, section
from raysweep.analysis.tables import Table

STOPPED = "stopped_by_scheduler"


def stop_tags(uri: str, run_ids: list[str]) -> dict[str, dict[str, str]]:
    """run id -> its ``raysweep.stop.<name>`` tags (without the prefix)."""
    c = tracking.client(uri)
    out = {}
    for run_id in run_ids:
        tags = c.get_run(run_id).data.tags
        out[run_id] = {k[len("raysweep.stop.") :]: v for k, v in tags.items() if k.startswith("raysweep.stop.")}
    return out


@section(ANY_STUDY, "early_stopping", "early-stopping decisions")
def decisions_table(r: StudyRuns) -> Table:
    """A row per trial a scheduler stopped, best at its rung first."""
    stopped = r.runs[r.runs["outcome"] == STOPPED]
    if stopped.empty:
        raise Skip(f"{r.study}: no trial was stopped by a scheduler")
    names = select.varied(r.runs) or [c[len("params.") :] for c in select.config_columns(r.runs)][:6]
    tags = stop_tags(r.tracking_uri, list(stopped["run_id"]))
    rows = []
    for _, run in stopped.iterrows():
        t = tags[run["run_id"]]
        if "rung" not in t:  # stopped before stops were recorded: what the run itself still says
            t = {"rung": run.get("metrics.epoch"), "value": run.get(f"metrics.{r.metric}")}
        rows.append({**{n: run.get(select.param(n)) for n in names}, "seed": run.get("params.seed"),
                     "sweep": run["sweep_name"], "rung (epoch)": _num(t.get("rung"), int),
                     f"{r.metric} at rung": _num(t.get("value")), "cut-off": _num(t.get("cutoff")),
                     "trials compared": _num(t.get("compared_with"), int), "run": run["run_id"]})  # fmt: skip
    frame = pd.DataFrame(rows).sort_values(f"{r.metric} at rung", ascending=r.mode == "min", na_position="last")
    side = "below" if r.mode == "max" else "above"
    title = (f"{r.study}: early-stopping decisions ({len(stopped)} of {len(r.runs)} trials stopped early; each was "
             f"{side} its rung's cut-off, a quantile of the {r.metric} of the trials recorded at that rung "
             f"before it); check them with `raysweep audit SWEEP`")  # fmt: skip
    return Table("early_stopping", title, frame.reset_index(drop=True), {n: "g" for n in names})


def _num(text: object, kind: type = float) -> object:
    try:
        return kind(float(text))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
