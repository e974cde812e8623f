"""Where each study registers its report sections: one module per study, one decorator per item.

A study's tables and figures live in its analysis module (``Study.analysis_module``, e.g.
``raysweep/analysis/<study>.py``) as functions decorated with ``@section(study, name, title)``; the
registry imports each registered study's module, so adding a study's report is that module.
Sections of study ``"*"`` (``analysis/generic.py``) run for every study found in the experiment.
A section returns a Table, Figure, Text or Image (or a list of them) and raises ``Skip("why")``
when its runs are not there; the report prints that reason as one line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from raysweep.analysis.select import attach_roles, ranked

ANY_STUDY = "*"

GENERIC_MODULE = "raysweep.analysis.generic"  # sections of every study
GENERIC_MODULES = (GENERIC_MODULE, "raysweep.analysis.early_stopping")  # every module of such sections


class Skip(Exception):  # noqa: N818 - it is a control signal, not an error
    """A section has nothing to show; the message says why (one line in the report)."""


@dataclass
class StudyRuns:
    """What a section sees: one study's trial runs of the experiment, and how they are ranked."""

    experiment: str
    tracking_uri: str
    study: str
    runs: pd.DataFrame  # the rows of load_runs for this study
    sweeps: pd.DataFrame  # the rows of load_sweeps for this study
    metric: str  # ranking metric, e.g. "val_acc"
    mode: str  # "max" or "min"
    cache: dict[str, Any] = field(default_factory=dict)  # shared between a study's sections
    leaky: dict[str, tuple] = field(default_factory=dict)  # Study.leaky: such runs are shown, never ranked

    def __post_init__(self) -> None:
        self.runs = attach_roles(self.runs, self.sweeps)  # each run's dimension roles, as its sweep recorded them

    @property
    def rankable(self) -> pd.DataFrame:
        """The runs that may rank or win (no leaky param value)."""
        return self.runs[ranked(self.runs, self.leaky)]


@dataclass
class Text:
    """A block of text in report.md (e.g. generated samples); also written to ``<name>.txt``."""

    name: str
    title: str
    body: str
    runs: list[str] = field(default_factory=list)


@dataclass
class Image:
    """An existing image (a run's artifact) copied into the report as ``<name>.png``."""

    name: str
    title: str
    path: Path
    runs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Section:
    study: str
    name: str
    title: str
    fn: Callable[[StudyRuns], Any]


_SECTIONS: list[Section] = []


def section(study: str, name: str, title: str) -> Callable[[Callable[[StudyRuns], Any]], Callable[[StudyRuns], Any]]:
    """Register ``fn(runs: StudyRuns)`` as a report section of ``study`` (in definition order)."""

    def deco(fn: Callable[[StudyRuns], Any]) -> Callable[[StudyRuns], Any]:
        if any(s.study == study and s.name == name for s in _SECTIONS):
            raise ValueError(f"report section {study}/{name} is registered twice")
        _SECTIONS.append(Section(study, name, title, fn))
        return fn

    return deco


def sections(study: str) -> list[Section]:
    """The study's own sections, then the generic ones."""
    from raysweep.studies import STUDIES

    for module in GENERIC_MODULES:
        importlib.import_module(module)
    if study in STUDIES and STUDIES[study].analysis_module:
        importlib.import_module(STUDIES[study].analysis_module)
    own = [s for s in _SECTIONS if s.study == study]
    return own + [s for s in _SECTIONS if s.study == ANY_STUDY]


def known_studies() -> list[str]:
    """Registered studies with a report module of their own."""
    from raysweep.studies import STUDIES

    return [name for name, s in STUDIES.items() if s.analysis_module]
