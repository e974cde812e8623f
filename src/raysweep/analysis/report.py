"""``raysweep report``: every registered section of every study in an experiment, written as files
(tables as Markdown/CSV/LaTeX, figures as PNG, ``report.md`` showing them in order) and logged as the
artifacts of a ``raysweep.kind=report`` run in the same experiment, so the MLflow UI shows them.

A section without its runs is skipped with one line per reason (naming every section it skipped);
only the studies present in the experiment are reported on. A section that breaks is reported with
one line too (and makes the command exit 1) so the rest of the report is still written.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from raysweep import tracking
from raysweep.analysis import select
from raysweep.analysis.figures import Figure, save
from raysweep.analysis.registry import Image, Skip, StudyRuns, Text, known_studies, sections
from raysweep.analysis.runs import experiment_id, load_runs, load_sweeps, ranking
from raysweep.analysis.tables import Table, to_markdown, write_table
from raysweep.studies import STUDIES
from raysweep.text import plural


@dataclass
class ReportResult:
    out: Path  # the report folder
    report_md: Path
    run_id: str  # the MLflow report run
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {"table": 0, "figure": 0, "text": 0, "image": 0})


def build_report(experiment: str, tracking_uri: str | None = None, out: str | Path | None = None,
                 say: Callable[[str], None] = print, against: str | None = None,
                 header: list[str] | None = None) -> ReportResult:  # fmt: skip
    """Write the report of ``experiment`` into ``out`` (default ``./report/<experiment>``) and log it.

    ``against``: a reference report ("report" for the packaged source report, or a path; see
    ``analysis.against``): its numbers beside each regenerated table, its claims with verdicts.
    ``header``: lines written under the title (``raysweep reproduce`` states its scale there)."""
    from raysweep.analysis import against as vs

    uri = tracking.resolve_tracking_uri(tracking_uri)
    ref = vs.load_reference(against) if against else None  # a bad --against fails before anything is written
    runs = load_runs(experiment, uri)
    sweeps = load_sweeps(experiment, uri)
    folder = Path(out) if out else Path("report") / experiment
    res = ReportResult(folder, folder / "report.md", "")
    _clean(folder)
    studies = study_runs(experiment, uri, runs, sweeps)
    md = [f"# Report: experiment `{experiment}`", "",
          f"{plural(len(runs), 'trial run')} in {plural(runs['sweep_run_id'].nunique(), 'sweep')}, tracking URI "
          f"`{uri}`, written {time.strftime('%Y-%m-%d %H:%M:%S')} by raysweep (git {tracking.git_commit()[:12]}). "
          f"Every table row names the MLflow run ids it came from (column `runs`).", "",
          *_data_lines(sweeps), *(header or [])]  # fmt: skip
    by_study = {study: ctx.runs for study, ctx in studies.items()}
    beside: dict[str, dict[str, Any]] = {}  # study -> {"Table N": its cells against ours}
    if ref is not None:
        md += [f"## Against the source report: {ref.get('title', against)}", "",
               "Where our runs depart from the report's setup:", "",
               *[f"- {line}" for line in vs.departures(by_study, ref)], "",
               f"Verdicts: {', '.join(vs.VERDICTS)}; each with its reason from the numbers. A table's cells "
               "follow the table they check.", ""]  # fmt: skip
        md += ["## Conclusions", ""] + _write(vs.conclusions(by_study, ref), "report", folder, res, say)
        beside = {study: vs.cell_tables(study, ctx.runs, ref) for study, ctx in studies.items()}
    for study, ctx in studies.items():
        md += [f"## {study}", "", _summary(ctx), ""]
        if missing := _missing_metric(ctx):
            md += [f"> {missing}", ""]
            say(f"{study}: {missing}")
        skips: dict[str, list[str]] = {}  # reason -> the sections it skipped
        for sec in sections(study):
            try:
                made = sec.fn(ctx)
            except Skip as exc:
                skips.setdefault(str(exc), []).append(sec.name)
                continue
            except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
                line = f"{study}/{sec.name} failed: {type(exc).__name__}: {exc}"
                res.failed.append(line)
                md += [f"> **{line}**", ""]
                say(line)
                continue
            for item in made if isinstance(made, list) else [made]:
                md += _write(item, study, folder, res, say)
            if (table := _label(sec.name)) in beside.get(study, {}):
                md += _write(beside[study].pop(table), study, folder, res, say)
        for table in beside.get(study, {}).values():  # the report's tables whose section was skipped
            md += _write(table, study, folder, res, say)
        for reason, names in skips.items():
            _skip(res, md, say, f"{reason} [skips {', '.join(_label(n) for n in names)}]")
    res.report_md.write_text("\n".join(md), encoding="utf-8")
    res.files.append(res.report_md)
    res.run_id = _log_run(uri, experiment, folder, runs, res)
    return res


def study_runs(experiment: str, uri: str, runs: pd.DataFrame | None = None,
               sweeps: pd.DataFrame | None = None) -> dict[str, StudyRuns]:  # fmt: skip
    """Each study's runs of the experiment with its ranking metric; registered studies first."""
    runs = load_runs(experiment, uri) if runs is None else runs
    sweeps = load_sweeps(experiment, uri) if sweeps is None else sweeps
    names = runs["study"].fillna("").replace("", "unknown")
    present = list(dict.fromkeys(names))
    order = [s for s in known_studies() if s in present] + sorted(s for s in present if s not in known_studies())
    out = {}
    for study in order:
        sw = sweeps[sweeps["study"] == study] if len(sweeps) else sweeps
        logged = sw["params.metric"].dropna() if "params.metric" in sw else pd.Series(dtype=object)
        metric, mode = ranking(study, str(logged.iloc[-1]) if len(logged) else None)
        leaky = dict(STUDIES[study].leaky) if study in STUDIES else {}
        out[study] = StudyRuns(experiment, uri, study, _own_columns(runs[names == study]), sw, metric, mode,
                               leaky=leaky)  # fmt: skip
    return out


def _own_columns(part: pd.DataFrame) -> pd.DataFrame:
    """One study's rows without the other studies' params and metrics (all empty here), and with whole
    numbers read back as integers (a column with another study's gaps was float: ``layers 2.0``)."""
    empty = [c for c in part.columns if c.startswith(("params.", "metrics.", "best.")) and part[c].isna().all()]
    part = part.drop(columns=empty).reset_index(drop=True)
    for col in part.columns:
        if col.startswith("params.") and part[col].dtype.kind == "f" and part[col].notna().all():
            if (part[col] % 1 == 0).all():
                part[col] = part[col].astype("int64")
    return part


def _label(name: str) -> str:
    """A section's name as the report numbers it: ``figure4`` -> ``Figure 4``; others unchanged."""
    m = re.fullmatch(r"(table|figure)(\d+)", name)
    return f"{m.group(1).title()} {m.group(2)}" if m else name


def _data_lines(sweeps: pd.DataFrame) -> list[str]:
    """The data each study's sweeps trained on, with its content hash, stated once."""
    if sweeps.empty or "data" not in sweeps:
        return []
    found: dict[tuple[str, str], list[str]] = {}
    for data, sha, study in zip(sweeps["data"], sweeps["data_sha256"], sweeps["study"], strict=True):
        if data:
            found.setdefault((data, sha), [])
            if study not in found[(data, sha)]:
                found[(data, sha)].append(study)
    lines = [f"- `{d}` (SHA-256 of its decoded content `{sha or 'not recorded'}`): {', '.join(s)}"
             for (d, sha), s in found.items()]  # fmt: skip
    return ["Data:", "", *lines, ""] if lines else []


def _skip(res: ReportResult, md: list[str], say: Callable[[str], None], line: str) -> None:
    res.skipped.append(line)
    md += [f"*Skipped: {line}*", ""]
    say(f"skipped: {line}")


def _summary(r: StudyRuns) -> str:
    names = ", ".join(f"`{n}` ({i})" for n, i in dict.fromkeys(zip(r.runs["sweep_name"], r.runs["sweep_run_id"],
                                                                      strict=True)))  # fmt: skip
    status = ", ".join(f"{k} {v}" for k, v in r.runs["status"].value_counts().items())
    note = STUDIES[r.study].ranking_note() if r.study in STUDIES else ""
    return (f"{plural(len(r.runs), 'trial run')} ({status}) from sweeps {names or '(none)'}; "
            f"trials ranked by {r.metric} ({r.mode})" + (f"; {note}." if note else "."))


def _missing_metric(r: StudyRuns) -> str:
    n = len(r.runs) - len(select.scored(r.runs, r.metric)) - int(select.failed(r.runs).sum())
    if n <= 0:
        return ""
    return (f"{n} of {len(r.runs)} trial runs have no {r.metric} and did not fail "
            f"(killed, interrupted or still running?); they are left out of the rankings")


def _write(item: Any, study: str, folder: Path, res: ReportResult, say: Callable[[str], None]) -> list[str]:
    stem = f"{study}_{item.name}"
    if isinstance(item, Table):
        item.name = stem
        paths = write_table(item, folder / "tables")
        res.files += paths.values()
        res.counts["table"] += 1
        say(f"table   tables/{stem}.{{md,csv,tex}}  {item.title}")
        note = [f"*{item.note}*", ""] if item.note else []
        return [f"### {item.title}", "", to_markdown(item), *note,
                f"[CSV](tables/{stem}.csv) · [LaTeX](tables/{stem}.tex)", ""]
    if isinstance(item, (Figure, Image)):
        path = folder / "figures" / f"{stem}.png"
        if isinstance(item, Figure):
            save(item.fig, path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(item.path, path)
        res.files.append(path)
        res.counts["figure" if isinstance(item, Figure) else "image"] += 1
        say(f"figure  figures/{stem}.png  {item.title}")
        return [f"### {item.title}", "", f"![{item.title}](figures/{stem}.png)", ""]
    if isinstance(item, Text):
        path = folder / "texts" / f"{stem}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(item.body, encoding="utf-8")
        res.files.append(path)
        res.counts["text"] += 1
        say(f"text    texts/{stem}.txt  {item.title}")
        return [f"### {item.title}", "", "```text", item.body, "```", ""]
    raise TypeError(f"a report section returned {type(item).__name__}, not a Table/Figure/Text/Image")


def _clean(folder: Path) -> None:
    """Remove what an earlier report wrote here (only our own files), so nothing stale is logged."""
    for sub, exts in (("tables", (".md", ".csv", ".tex")), ("figures", (".png",)), ("texts", (".txt",))):
        for f in (folder / sub).glob("*_*"):
            if f.suffix in exts and f.is_file():
                f.unlink()
    folder.mkdir(parents=True, exist_ok=True)


def _log_run(uri: str, experiment: str, folder: Path, runs: pd.DataFrame, res: ReportResult) -> str:
    """The report run: tag raysweep.kind=report, the report folder as its artifacts."""
    c = tracking.client(uri)
    run = c.create_run(experiment_id(experiment, uri), run_name=f"report-{time.strftime('%Y%m%d-%H%M%S')}",
                       tags={tracking.KIND_TAG: "report", "raysweep.git_commit": tracking.git_commit(),
                             "raysweep.sweeps": " ".join(runs["sweep_run_id"].unique())})  # fmt: skip
    logger = tracking.RunLogger(uri, run.info.run_id)
    logger.log_params({"trial_runs": len(runs), "tables": res.counts["table"], "figures": res.counts["figure"],
                       "skipped": len(res.skipped), "failed": len(res.failed)})  # fmt: skip
    for f in res.files:  # only what this report wrote, in the same layout as the folder
        sub = f.parent.relative_to(folder).as_posix()
        c.log_artifact(run.info.run_id, str(f), None if sub == "." else sub)
    logger.end("FAILED" if res.failed else "FINISHED")
    return run.info.run_id
