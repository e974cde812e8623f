"""Data layer: loaders decode once per node into a disk cache that the trials of a sweep share."""

from raysweep.data.errors import DataError

__all__ = ["DataError"]
