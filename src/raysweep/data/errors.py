"""Errors of the data layer that a user can act on (a wrong path, no network, a bad file)."""

from __future__ import annotations


class DataError(Exception):
    """A data set could not be loaded; the message says what was tried and how to fix it.

    Raised instead of the loader's own exceptions so that a sweep fails with one readable line,
    not a traceback from inside ``datasets``.
    """
