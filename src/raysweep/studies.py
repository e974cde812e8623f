"""The one registry of studies: discovered, never listed by hand.

Every module of ``raysweep.search_spaces`` that defines ``STUDY = Study(...)`` is a study. A study
in its own installed package is a plugin: its ``pyproject.toml`` names it in the ``raysweep.studies``
entry-point group (the standard Python plugin mechanism), e.g.

    [project.entry-points."raysweep.studies"]
    tiny = "tiny_study.spaces"          # the module defining STUDY (or "tiny_study.spaces:STUDY")

Code that defines a study at run time (a notebook, a test) calls ``register_study``. The CLI, the
sweep driver, the model registry and the report all read this registry, so adding a study adds
files and edits no list.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points

from raysweep.search_spaces import SpaceError
from raysweep.study import Study, TrialResources

__all__ = ["STUDIES", "Study", "TrialResources", "get_study", "register_study"]

ENTRY_POINTS = "raysweep.studies"  # the entry-point group of studies in other installed packages

_REGISTERED: dict[str, Study] = {}
_BROKEN: dict[str, str] = {}  # plugin name -> why it did not load (said when that study is asked for)
_discovered = False


def register_study(study: Study) -> Study:
    """Add ``study`` to the registry (a second, different study of the same name is an error)."""
    old = _REGISTERED.get(study.name)
    if old is not None and old != study:
        raise ValueError(f"study {study.name!r} is registered twice ({old.spaces_module}, {study.spaces_module})")
    _REGISTERED[study.name] = study
    return study


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    import raysweep.search_spaces as spaces

    for info in sorted(pkgutil.iter_modules(spaces.__path__), key=lambda i: i.name):
        study = getattr(importlib.import_module(f"{spaces.__name__}.{info.name}"), "STUDY", None)
        if isinstance(study, Study):
            register_study(study)
    for ep in entry_points(group=ENTRY_POINTS):
        _load_plugin(ep)


def _load_plugin(ep: EntryPoint) -> None:
    """Register the study an entry point names (its module's ``STUDY``, or the Study itself). A
    plugin that fails to load breaks only itself: asking for it says why (``get_study``)."""
    try:
        obj = ep.load()
        study = getattr(obj, "STUDY", obj)
        if not isinstance(study, Study):
            raise TypeError(f"it names {type(study).__name__}, not a module defining STUDY = Study(...)")
        register_study(study)
    except Exception as exc:  # any error of someone else's package
        _BROKEN[ep.name] = f"entry point {ep.name} = {ep.value!r} did not load: {type(exc).__name__}: {exc}"


class _Registry(Mapping[str, Study]):
    """``STUDIES``: name -> Study, discovered on first use (importing this module stays cheap)."""

    def __getitem__(self, name: str) -> Study:
        _discover()
        return _REGISTERED[name]

    def __iter__(self) -> Iterator[str]:
        _discover()
        return iter(list(_REGISTERED))

    def __len__(self) -> int:
        _discover()
        return len(_REGISTERED)


STUDIES: Mapping[str, Study] = _Registry()


def get_study(name: str) -> Study:
    """The study called ``name``; SpaceError listing the known ones otherwise."""
    if name not in STUDIES:
        if name in _BROKEN:
            raise SpaceError(f"study {name!r}: {_BROKEN[name]}")
        raise SpaceError(f"unknown study {name!r}; known studies: {', '.join(STUDIES)}")
    return STUDIES[name]
