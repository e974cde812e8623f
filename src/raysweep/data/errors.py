"""The one exception a loader raises for bad data input."""


class DataError(Exception):
    """Missing, malformed or unreachable data; the message says what was tried and what to do."""
