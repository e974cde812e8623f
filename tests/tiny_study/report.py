"""The tiny study's report section: accuracy per width, every row naming its runs."""

from __future__ import annotations

import pandas as pd

from raysweep.analysis import select
from raysweep.analysis.registry import StudyRuns, section
from raysweep.analysis.tables import Table, cell


@section("tiny", "widths", "accuracy per width")
def widths(r: StudyRuns) -> Table:
    rows = [{"hidden": g["params.hidden"].iloc[0], "val acc": cell(g, "best.val_acc"), "runs": select.run_ids(g)}
            for g in select.groups(r.runs)]  # fmt: skip
    return Table("widths", "Table T: validation accuracy per hidden width", pd.DataFrame(rows), {"val acc": ".3f"})
