"""The one registry of studies: discovered, never listed by hand.

Every module of ``raysweep.search_spaces`` that defines ``STUDY = Study(...)`` is a study; a study
defined outside the package (a plugin, a test) calls ``register_study``. The CLI, the sweep
driver, the model registry and the report all read this registry, so adding a study adds files
and edits no list.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping

from raysweep.search_spaces import SpaceError
from raysweep.study import Study, TrialResources

__all__ = ["STUDIES", "Study", "TrialResources", "get_study", "register_study"]

_REGISTERED: dict[str, Study] = {}
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
        raise SpaceError(f"unknown study {name!r}; known studies: {', '.join(STUDIES)}")
    return STUDIES[name]
