"""Data sets of the studies: loading, tokenising and splitting."""

from raysweep.data.errors import DataError

__all__ = ["DataError"]
