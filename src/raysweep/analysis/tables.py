"""Tables: cells (numbers, text, or ``Stat`` over seeds) rendered as Markdown, CSV and LaTeX.

Why our own renderers: three small functions instead of optional dependencies (tabulate, jinja2),
and one cell format for all three outputs, so the CSV says what the Markdown says.
"""

from __future__ import annotations

import csv
import io
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from raysweep.stats import LEVEL, Comparison, spread


@dataclass(frozen=True)
class Stat:
    """A cell over the seeds of one configuration: reads ``mean ± std (n=k)`` (sample std, ``stats.spread``)."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return spread(self.values).mean

    @property
    def std(self) -> float:
        return spread(self.values).std if len(self.values) > 1 else 0.0

    @property
    def n(self) -> int:
        return len(self.values)


CONSTANT = ("metrics.num_params",)  # the same for every seed of a configuration, like its params


def cell(group: pd.DataFrame, col: str) -> Any:
    """One column of a group of runs (the seeds of a configuration) as a cell.

    A measured number over n > 1 runs is a Stat (even if the seeds agree); params, parameter
    counts and text are shown once when all runs agree.
    """
    if col not in group:
        return math.nan
    vals = [v for v in group[col].tolist() if not blank(v)]
    if not vals:
        return math.nan
    numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in vals)
    measured = numeric and not col.startswith("params.") and col not in CONSTANT
    if len(vals) > 1 and measured:
        return Stat(tuple(float(v) for v in vals))
    if len({str(v) for v in vals}) == 1:
        return vals[0]
    if numeric:
        return Stat(tuple(float(v) for v in vals))
    return " / ".join(dict.fromkeys(str(v) for v in vals))


@dataclass
class Table:
    """A report table. ``formats`` maps a column to a format spec (default: ".4f" for floats)."""

    name: str  # file stem
    title: str
    frame: pd.DataFrame
    formats: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def text(self, col: str, value: Any, digits: bool = True) -> str:
        """One cell as text; ``digits=False`` keeps full precision (CSV)."""
        spec = self.formats.get(col, "")
        if isinstance(value, Comparison):  # a difference with its 95% interval
            return diff_text(value, (spec or ".4f") if digits else None)
        if isinstance(value, Stat):
            if not digits:
                return f"{value.mean!r} ± {value.std!r} (n={value.n})"
            return f"{_num(value.mean, spec)} ± {_num(value.std, spec)} (n={value.n})"
        if blank(value):
            return ""
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return _num(value, spec) if digits else repr(float(value)) if isinstance(value, float) else str(value)
        return str(value)

    def rows(self, digits: bool = True) -> list[list[str]]:
        return [[self.text(c, v, digits) for c, v in zip(self.frame.columns, r, strict=True)]
                for r in self.frame.itertuples(index=False)]  # fmt: skip


def diff_text(c: Comparison, spec: str | None = ".4f") -> str:
    """``+0.0110 [95% CI -0.0632, +0.0965]``; ``spec`` None: full precision (CSV). One seed: no interval."""
    def num(v: float) -> str:
        return format(v, "+" + (spec or "").lstrip("+"))

    if c.verdict == "one seed: cannot tell" or math.isnan(c.low):
        return f"{num(c.diff)} (one seed: no interval)"
    return f"{num(c.diff)} [{int(LEVEL * 100)}% CI {num(c.low)}, {num(c.high)}]"


def blank(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, numbers.Real) and math.isnan(v))


def _num(v: float, spec: str) -> str:
    if spec:
        return format(v, spec)
    return str(int(v)) if isinstance(v, numbers.Integral) else f"{v:.4f}"


def to_markdown(t: Table) -> str:
    head = [str(c) for c in t.frame.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") or "—" for c in r) + " |" for r in t.rows()]
    return "\n".join(lines) + "\n"


def to_csv(t: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(t.frame.columns)
    w.writerows(t.rows(digits=False))
    return buf.getvalue()


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
        "—": "--"}  # fmt: skip


def _tex(s: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in s)


def to_latex(t: Table) -> str:
    """A booktabs table with its caption and a label ``tab:<name>``."""
    cols = list(t.frame.columns)
    lines = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{_tex(t.title)}}}", rf"\label{{tab:{t.name}}}",
             r"\begin{tabular}{" + "l" * len(cols) + "}", r"\toprule",
             " & ".join(_tex(str(c)) for c in cols) + r" \\", r"\midrule"]  # fmt: skip
    lines += [" & ".join(_tex(c) for c in r) + r" \\" for r in t.rows()]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_table(t: Table, folder: Path) -> dict[str, Path]:
    """``<name>.md``, ``.csv`` and ``.tex`` in ``folder``; returns the paths by extension."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for ext, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
        out[ext] = folder / f"{t.name}.{ext}"
        out[ext].write_text(render(t), encoding="utf-8")
    return out
