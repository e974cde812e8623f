"""Wording shared by the console and the report, so that both count things the same way."""


def plural(n: int, word: str) -> str:
    """``1 sweep``, ``2 sweeps``."""
    return f"{n} {word}{'' if n == 1 else 's'}"
