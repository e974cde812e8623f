"""The source report against our runs: each of its numbers and claims, with a verdict and its reason.

The report is data (``raysweep/reference/report.json``): cells (table, row, column, value, the
configuration of the row, the runs-DataFrame column that measures the same thing, and the metric's
direction), the setup of each table (data, image size, epochs, seeds), checks of the report against
itself, and its claims (the abstract's and each Key Findings bullet), each tied to the cells it rests on.

Verdicts (``VERDICTS``), each with a one-line reason built from the numbers:

- ``holds``: ours goes the same way, and reaches the same conclusion beyond seed noise (``stats.compare``);
- ``does not hold``: the opposite direction, a different winner, or a claimed difference that ours
  cannot separate from seed noise;
- ``not comparable``: our runs differ in data, image size, epochs or configuration (named);
- ``inconsistent in the report``: the report contradicts itself or its own setup (a check fires);
- ``cannot tell``: no matching runs, or one seed where a spread is needed.

A single number of the report carries no spread: it is compared as exact (``_EXACT``) against our
mean over seeds, i.e. a one-sample interval around ours.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from raysweep import stats
from raysweep.analysis import select
from raysweep.analysis.errors import AnalysisError
from raysweep.analysis.tables import Table

VERDICTS = ("holds", "does not hold", "not comparable", "inconsistent in the report", "cannot tell")
SETUP_KEYS = ("data", "image_size", "epochs")  # what a table's setup fixes, checked against each run's params
COUNT_TOLERANCE = 0.01  # a parameter count printed as 0.43M matches within 1%
QUOTE_TOLERANCE = 5e-5  # a number quoted twice in the report must agree to its printed digits


def load_reference(spec: str) -> dict[str, Any]:
    """``"report"``: the packaged source report; else a path to a file in the same format."""
    if spec == "report":
        text = resources.files("raysweep.reference").joinpath("report.json").read_text(encoding="utf-8")
        where = "the packaged report.json"
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise AnalysisError(f"--against {spec}: no such file; pass 'report' (the packaged source report) "
                                "or a path to a reference file in its format")  # fmt: skip
        text, where = path.read_text(encoding="utf-8"), str(path)
    try:
        ref = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnalysisError(f"--against {where}: not JSON ({exc})") from None
    missing = [k for k in ("setups", "cells", "claims") if k not in ref]
    if missing:
        raise AnalysisError(f"--against {where}: lacks {', '.join(missing)}; see raysweep/reference/report.json")
    ref["by_id"] = {c["id"]: c for c in ref["cells"]}
    ref.setdefault("checks", {})
    for claim in ref["claims"]:
        for cid in _cell_ids(claim):
            if cid not in ref["by_id"]:
                raise AnalysisError(f"--against {where}: claim {claim.get('id')} names unknown cell {cid!r}")
    return ref


def _cell_ids(claim: dict[str, Any]) -> list[str]:
    ids = [claim[k] for k in ("cell", "candidate", "reference") if k in claim] + list(claim.get("order", []))
    return ids + (claim["among"] if isinstance(claim.get("among"), list) else [])


@dataclass
class Judged:
    """A verdict with its reason, our side in words, the run ids behind it and the difference."""

    verdict: str
    reason: str
    ours: str = ""
    runs: list[str] = field(default_factory=list)
    diff: float = math.nan


# ---------------------------------------------------------------- matching our runs to the report's rows


def _same(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    except (TypeError, ValueError):
        return str(a) == str(b)


def _text(v: Any) -> str:
    """A param as written: a whole float (a column with gaps is float) reads as an integer."""
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _data_name(source: Any) -> str:
    """``/x/cifar10``, ``uoft-cs/cifar10`` -> ``cifar10``; ``synthetic`` stays."""
    return str(source).rstrip("/").split("/")[-1].lower()


def _values(g: pd.DataFrame, col: str) -> dict[Any, float]:
    """``seed -> value`` of ``col`` over a group's runs that did not fail (finite values only)."""
    if col not in g:
        return {}
    ok = g[~select.failed(g)]
    seeds = ok["params.seed"] if "params.seed" in ok else ok["run_id"]
    out = {}
    for s, v in zip(seeds, ok[col], strict=True):
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[s] = f
    return out


def _key(cell: dict[str, Any]) -> list[str]:
    return list(cell.get("key") or cell["config"])


def _context_diffs(g: pd.DataFrame, cell: dict[str, Any], skip: set[str] = frozenset()) -> list[str]:
    """Where a group's config departs from the cell's row outside its key: ``layers 2 (report: 15)``."""
    out = []
    for k, v in cell["config"].items():
        col = select.param(k)
        if k in skip or col not in g or pd.isna(g[col].iloc[0]):
            continue
        if not _same(g[col].iloc[0], v):
            out.append(f"{k} {_text(g[col].iloc[0])} (report: {v})")
    return out


def _candidates(runs: pd.DataFrame, cell: dict[str, Any], key: list[str] | None = None) -> list[pd.DataFrame]:
    """Our configurations that share the cell's key params and measured its column; best match first."""
    key = _key(cell) if key is None else key
    found = []
    for g in select.groups(runs):
        if all(select.param(k) in g and _same(g[select.param(k)].iloc[0], cell["config"][k]) for k in key):
            if _values(g, cell["ours"]):
                found.append(g)
    return sorted(found, key=lambda g: (len(_context_diffs(g, cell)), -len(_values(g, cell["ours"])),
                                        -g["start_time"].max().value if "start_time" in g else 0))  # fmt: skip


Pair = tuple[pd.DataFrame, pd.DataFrame, list[str]]  # (candidate group, reference group, the factor they differ in)


def _pair(runs: pd.DataFrame, a: dict[str, Any], b: dict[str, Any]) -> Pair | None:
    """Two of our configurations that differ where the cells' rows differ (their factor) and agree on
    every other param: the slice that tests the report's comparison, closest to its rows first."""
    keys = dict.fromkeys(_key(a) + _key(b))
    factor = [k for k in keys if k in a["config"] and k in b["config"] and not _same(a["config"][k], b["config"][k])]
    factor = factor or list(keys)
    cols = [c for c in select.config_columns(runs) if c[len("params.") :] not in factor]  # never runtime records
    best, best_score = None, None
    for ga in _candidates(runs, a, factor):
        ida = select.config_ids(ga.iloc[:1], cols).iloc[0]
        for gb in _candidates(runs, b, factor):
            if select.config_ids(gb.iloc[:1], cols).iloc[0] != ida:
                continue
            score = (len(_context_diffs(ga, a)), -min(len(_values(ga, a["ours"])), len(_values(gb, b["ours"]))))
            if best_score is None or score < best_score:
                best, best_score = (ga, gb, factor), score
    return best


# ---------------------------------------------------------------- setups, checks, formatting


def _setup(ref: dict[str, Any], cell: dict[str, Any]) -> dict[str, Any]:
    return ref["setups"].get(cell["table"], {})


def setup_diffs(g: pd.DataFrame, setup: dict[str, Any], keys: tuple[str, ...] | list[str] = SETUP_KEYS) -> list[str]:
    """How our group's data, image size and epochs depart from the report's setup, in words."""
    out = []
    for k in keys:
        want, col = setup.get(k), select.param(k)
        if want is None or col not in g:
            continue
        have = sorted({_text(v) for v in g[col].dropna()})
        if k == "data":
            if {_data_name(v) for v in have} != {_data_name(want)}:
                out.append(f"data {', '.join(_data_name(v) for v in have)} (report: {want})")
        elif not all(_same(v, want) for v in have):
            out.append(f"{k.replace('_', ' ')} {', '.join(have)} (report: {want})")
    return out


def _num(cell: dict[str, Any], v: float) -> str:
    if cell.get("kind") == "count":
        return f"{v:,.0f}"
    return f"{v:.2f}" if "perplexity" in cell.get("metric", "") else f"{v:.4f}"


def _spread(cell: dict[str, Any], vals: dict[Any, float]) -> str:
    s = stats.spread(vals.values())
    if cell.get("kind") == "count" and s.n:
        return f"{s.mean:,.0f} (n={s.n})"
    return stats.fmt_spread(s, 2 if "perplexity" in cell.get("metric", "") else 4)


def _label(cell: dict[str, Any]) -> str:
    return f"{cell['table']} {cell['row']} {cell['column']}"


def check(ref: dict[str, Any], name: str) -> str:
    """The reason a check of the report against itself fires, or "" when the report is consistent."""
    c, cells = ref["checks"][name], ref["by_id"]
    kind = c["kind"]
    if kind == "leak_not_lower":
        leaky, honest = cells[c["leaky"]], cells[c["honest"]]
        if leaky["value"] < honest["value"]:
            return (f"{leaky['table']} gives the {leaky['row'].lower()} {leaky['value']:.1%} "
                    f"{leaky['column'].lower()}, below the {honest['row'].lower()}'s {honest['value']:.1%}, "
                    f"though {c['why']}: a leak can only raise it")  # fmt: skip
        return ""
    if kind == "near_uniform":
        vals = [cells[i]["value"] for i in c["cells"]]
        if min(vals) > c["uniform"] - c["within"]:
            pub = list(c["published"].values())
            return (f"{cells[c['cells'][0]]['table']}'s {min(vals):.2f}-{max(vals):.2f} bits/dim lie within "
                    f"{c['uniform'] - min(vals):.2f} bit of a uniform model's {c['uniform']:.2f}, while "
                    f"{c['published_source']} gives {min(pub):.2f}-{max(pub):.2f}")  # fmt: skip
        return ""
    if kind == "direction":
        better, worse = cells[c["better"]], cells[c["worse"]]
        sign = 1 if better["mode"] == "max" else -1
        if sign * (better["value"] - worse["value"]) <= 0:
            return (f"its own {better['table']} has {better['row']} at {better['value']:.4f} "
                    f"{better['column'].lower()}, {'below' if sign > 0 else 'above'} {worse['row']}'s "
                    f"{worse['value']:.4f}")  # fmt: skip
        return ""
    if kind == "quoted":
        bad = [f"{q:.4f} where {cells[i]['table']} gives {cells[i]['value']:.4f} ({cells[i]['row']})"
               for i, q in c["quotes"].items() if abs(q - cells[i]["value"]) > QUOTE_TOLERANCE]  # fmt: skip
        return f"{c['where']} quotes " + "; ".join(bad) if bad else ""
    raise AnalysisError(f"reference check {name!r} has unknown kind {kind!r}")


def _fired(ref: dict[str, Any], names: list[str]) -> list[str]:
    return [r for r in (check(ref, n) for n in names) if r]


# ---------------------------------------------------------------- one cell


def judge_cell(runs: pd.DataFrame, ref: dict[str, Any], cell: dict[str, Any]) -> Judged:
    """The report's number against ours for the same configuration and measure."""
    fired = _fired(ref, cell.get("checks", []))
    cands = _candidates(runs, cell)
    if not cands:
        ours = Judged("cannot tell", f"no run of ours has {_config_words(cell, _key(cell))} "
                                     f"with a finite {cell['ours']}")  # fmt: skip
        return Judged("inconsistent in the report", f"{fired[0]}; {ours.reason}") if fired else ours
    g = cands[0]
    vals = _values(g, cell["ours"])
    ids = list(g["run_id"])
    ours_txt = _spread(cell, vals)
    diff = stats.spread(vals.values()).mean - cell["value"]
    if fired:
        return Judged("inconsistent in the report", f"{fired[0]}; ours {ours_txt}", ours_txt, ids, diff)
    departs = setup_diffs(g, _setup(ref, cell)) + _context_diffs(g, cell)
    if departs:
        return Judged("not comparable", f"ours ran with {'; '.join(departs)}: ours {ours_txt} against "
                                        f"the report's {_num(cell, cell['value'])}", ours_txt, ids, diff)  # fmt: skip
    if cell.get("kind") == "count":
        mean = stats.spread(vals.values()).mean
        rel = (mean - cell["value"]) / cell["value"]
        verdict = "holds" if abs(rel) <= COUNT_TOLERANCE else "does not hold"
        return Judged(verdict, f"ours {mean:,.0f} against the report's {cell['value']:,.0f} ({rel:+.1%})",
                      ours_txt, ids, diff)  # fmt: skip
    c = stats.compare(vals, _exact(cell["value"]), cell["mode"])
    if c.verdict == "one seed: cannot tell":
        why = f"ours {ours_txt} against the report's {_num(cell, cell['value'])} ({diff:+.4f}): one seed has no spread"
        return Judged("cannot tell", why, ours_txt, ids, diff)
    word = {"better": "ours beats it", "worse": "ours falls short", "within seed noise": "within seed noise"}
    verdict = "does not hold" if c.verdict == "worse" else "holds"
    return Judged(verdict, f"ours {ours_txt} against the report's {_num(cell, cell['value'])}: {diff:+.4f} "
                           f"[95% CI {c.low:+.4f}, {c.high:+.4f}], {word[c.verdict]}", ours_txt, ids, diff)  # fmt: skip


def _exact(value: float) -> list[float]:
    """The report's single number as a sample with no spread, so ``compare`` gives a one-sample interval."""
    return [value, value]


def _config_words(cell: dict[str, Any], keys: list[str]) -> str:
    return ", ".join(f"{k}={cell['config'][k]}" for k in keys)


# ---------------------------------------------------------------- one claim


def judge_claim(by_study: dict[str, pd.DataFrame], ref: dict[str, Any], claim: dict[str, Any]) -> Judged:
    """A claim of the report against our runs (``by_study``: each study's runs DataFrame)."""
    kind = claim["kind"]
    first = ref["by_id"][_cell_ids(claim)[0]]
    runs = by_study.get(first["study"])
    if runs is None or runs.empty:
        ours = Judged("cannot tell", f"no {first['study']} runs in this experiment")
    elif kind == "level":
        ours = judge_cell(runs, ref, ref["by_id"][claim["cell"]])
    elif kind == "compare":
        ours = _compare_claim(runs, ref, claim, ref["by_id"][claim["candidate"]], ref["by_id"][claim["reference"]],
                              claim["expect"])  # fmt: skip
    elif kind == "ranking":
        ours = _ranking_claim(runs, ref, claim)
    elif kind == "winner":
        ours = _winner_claim(runs, ref, claim)
    else:
        raise AnalysisError(f"reference claim {claim.get('id')} has unknown kind {kind!r}")
    fired = _fired(ref, claim.get("checks", []))
    if fired and ours.verdict != "inconsistent in the report":
        tail = f"; ours: {ours.verdict}, {ours.reason}" if ours.reason else ""
        return Judged("inconsistent in the report", "; ".join(fired) + tail, ours.ours, ours.runs, ours.diff)
    return ours


def _requires(claim: dict[str, Any]) -> list[str]:
    return list(claim.get("requires", SETUP_KEYS))


def _compare_claim(runs: pd.DataFrame, ref: dict[str, Any], claim: dict[str, Any], a: dict[str, Any],
                   b: dict[str, Any], expect: str) -> Judged:  # fmt: skip
    pair = _pair(runs, a, b)
    if pair is None:
        return Judged("cannot tell", f"no two runs of ours differ only where {a['row']} and {b['row']} do "
                                     f"({_config_words(a, _key(a))} against {_config_words(b, _key(b))})")  # fmt: skip
    ga, gb, factor = pair
    ids = list(ga["run_id"]) + list(gb["run_id"])
    va, vb = _values(ga, a["ours"]), _values(gb, b["ours"])
    departs = setup_diffs(pd.concat([ga, gb]), _setup(ref, a), _requires(claim))
    c = stats.compare(va, vb, a["mode"])
    ours_txt = f"{_spread(a, va)} against {_spread(b, vb)}"
    report_diff = a["value"] - b["value"]
    context = _context_diffs(ga, a, set(factor))
    where = f" at {', '.join(context)}" if context else ""
    said = f"the report's {report_diff:+.4f} ({_num(a, a['value'])} against {_num(b, b['value'])})"
    if departs:
        return Judged("not comparable", f"ours ran with {'; '.join(departs)}; ours {c.diff:+.4f}{where}, {said}",
                      ours_txt, ids, c.diff)  # fmt: skip
    if c.verdict == "one seed: cannot tell":
        return Judged("cannot tell", f"ours {c.diff:+.4f}{where} from one seed a side, {said}", ours_txt, ids, c.diff)
    verdict = "holds" if c.verdict == expect else "does not hold"
    return Judged(verdict, f"ours {stats.fmt_comparison(c)}{where} ({ours_txt}); {said}", ours_txt, ids, c.diff)


def _ranking_claim(runs: pd.DataFrame, ref: dict[str, Any], claim: dict[str, Any]) -> Judged:
    cells = [ref["by_id"][i] for i in claim["order"]]
    parts = [_compare_claim(runs, ref, claim, a, b, "better") for a, b in zip(cells, cells[1:], strict=False)]
    names = [f"{a['row']} over {b['row']}" for a, b in zip(cells, cells[1:], strict=False)]
    reason = "; ".join(f"{n}: {p.verdict}, {p.reason}" for n, p in zip(names, parts, strict=True))
    ids = list(dict.fromkeys(i for p in parts for i in p.runs))
    for v in ("not comparable", "does not hold", "cannot tell"):
        if any(p.verdict == v for p in parts):
            return Judged(v, reason, " | ".join(p.ours for p in parts), ids)
    return Judged("holds", reason, " | ".join(p.ours for p in parts), ids)


def _winner_claim(runs: pd.DataFrame, ref: dict[str, Any], claim: dict[str, Any]) -> Judged:
    cell = ref["by_id"][claim["cell"]]
    col, mode = cell["ours"], cell["mode"]
    mine = _candidates(runs, cell)
    if claim["among"] == "study":
        from raysweep.studies import STUDIES

        leaky = dict(STUDIES[cell["study"]].leaky) if cell["study"] in STUDIES else {}
        pool = [g for g in select.groups(runs[select.ranked(runs, leaky)]) if _values(g, col)]
    else:
        pool = [c[0] for c in (_candidates(runs, ref["by_id"][i]) for i in claim["among"]) if c]
    if not pool:
        return Judged("cannot tell", f"no run of ours has a finite {col}")
    pick = max if mode == "max" else min
    best = pick(pool, key=lambda g: stats.spread(_values(g, col).values()).mean)
    best_txt = f"{_describe(best, cell)} {_spread(cell, _values(best, col))}"
    departs = setup_diffs(best, _setup(ref, cell), _requires(claim))
    if departs:
        return Judged("not comparable", f"ours ran with {'; '.join(departs)}; our best is {best_txt}",
                      best_txt, list(best["run_id"]))  # fmt: skip
    if not mine:
        return Judged("does not hold", f"our best is {best_txt}; the report's {_config_words(cell, _key(cell))} "
                                       f"was not reached by our runs", best_txt, list(best["run_id"]))  # fmt: skip
    g = mine[0]
    ids = list(dict.fromkeys(list(g["run_id"]) + list(best["run_id"])))
    ours_txt = f"{_describe(g, cell)} {_spread(cell, _values(g, col))}"
    if g is best or g.index.equals(best.index):
        rivals = [r for r in pool if not r.index.equals(g.index)]
        if not rivals:
            return Judged("cannot tell", f"ours ran only {ours_txt}: nothing to win against", ours_txt, ids)
        second = pick(rivals, key=lambda r: stats.spread(_values(r, col).values()).mean)
        c = stats.compare(_values(g, col), _values(second, col), mode)
        return Judged("holds", f"ours is best: {ours_txt}, against the runner-up {_describe(second, cell)}: "
                               f"{stats.fmt_comparison(c)}", ours_txt, ids, c.diff)  # fmt: skip
    c = stats.compare(_values(best, col), _values(g, col), mode)
    return Judged("does not hold", f"our best is {best_txt}, not {ours_txt}: {stats.fmt_comparison(c)}",
                  ours_txt, ids, c.diff)  # fmt: skip


def _describe(g: pd.DataFrame, cell: dict[str, Any]) -> str:
    names = [k for k in cell["config"] if select.param(k) in g] or select.varied(g)
    return ", ".join(f"{k}={_text(g[select.param(k)].iloc[0])}" for k in names)


# ---------------------------------------------------------------- what the report prints


COLUMNS = ["row", "column", "measure", "report", "ours", "difference", "verdict", "reason", "runs"]


def cell_tables(study: str, runs: pd.DataFrame, ref: dict[str, Any]) -> dict[str, Table]:
    """One table per report table of ``study``: every cell beside ours, with its verdict and reason."""
    by_table: dict[str, list[dict[str, Any]]] = {}
    for cell in ref["cells"]:
        if cell["study"] != study:
            continue
        j = judge_cell(runs, ref, cell)
        by_table.setdefault(cell["table"], []).append({
            "row": cell["row"], "column": cell["column"], "measure": f"{cell['metric']}, {cell['split']}",
            "report": _num(cell, cell["value"]), "ours": j.ours or "—",
            "difference": "" if math.isnan(j.diff) else (f"{j.diff:+,.0f}" if cell.get("kind") == "count"
                                                         else f"{j.diff:+.4f}"),
            "verdict": j.verdict, "reason": j.reason, "runs": " ".join(j.runs)})  # fmt: skip
    out = {}
    for table, rows in by_table.items():
        number = table.split()[-1]
        setup = ref["setups"].get(table, {})
        said = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in setup.items() if k != "study" and v is not None)
        title = f"{table} against the source report ({said}): {_counts(r['verdict'] for r in rows)}"
        out[table] = Table(f"against_table{number}", title, pd.DataFrame(rows, columns=COLUMNS))
    return out


def conclusions(by_study: dict[str, pd.DataFrame], ref: dict[str, Any]) -> Table:
    """The report's claims, each with its verdict on our runs."""
    rows = []
    for claim in ref["claims"]:
        j = judge_claim(by_study, ref, claim)
        rows.append({"claim": claim["id"], "where": claim["source"], "the report says": claim["text"],
                     "verdict": j.verdict, "reason": j.reason, "runs": " ".join(j.runs)})  # fmt: skip
    title = f"Conclusions: the report's {len(rows)} claims against our runs: {_counts(r['verdict'] for r in rows)}"
    return Table("conclusions", title, pd.DataFrame(rows))


def _counts(verdicts: Any) -> str:
    n: dict[str, int] = {}
    for v in verdicts:
        n[v] = n.get(v, 0) + 1
    return ", ".join(f"{n[v]} {v}" for v in VERDICTS if v in n)


def departures(by_study: dict[str, pd.DataFrame], ref: dict[str, Any]) -> list[str]:
    """One line per study: how our runs depart from the report's setup (epochs, images, image size, seeds)."""
    out = []
    tables: dict[str, list[str]] = {}
    for table, setup in ref["setups"].items():
        tables.setdefault(setup.get("study", ""), []).append(table)
    for study, runs in by_study.items():
        if study not in tables or runs.empty:
            continue
        setup = ref["setups"][tables[study][0]]
        parts = []
        for k in SETUP_KEYS:
            col = select.param(k)
            have = sorted({_text(v) for v in runs[col].dropna()}) if col in runs else []
            if k == "data":
                have = sorted({_data_name(v) for v in have})
            want = setup.get(k)
            if have:
                said = "not stated" if want is None else want
                parts.append(f"{k.replace('_', ' ')} {', '.join(have)} (report: {said})")
        if images := ", ".join(sorted({_text(v) for v in runs.get("params.train_images", pd.Series()).dropna()})):
            parts.append(f"training images per epoch {images} (report: all)")
        seeds = [len(g) for g in select.groups(runs)]
        if seeds:
            lo, hi = min(seeds), max(seeds)
            n = lo if lo == hi else f"{lo}-{hi}"
            parts.append(f"seeds per configuration {n} (report: {setup.get('seeds', 1)})")
        out.append(f"{study} ({', '.join(tables[study])}): " + "; ".join(parts))
    return out
