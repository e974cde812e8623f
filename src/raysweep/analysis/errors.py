"""The analysis' one error type, importable without pandas or matplotlib (the CLI catches it)."""


class AnalysisError(ValueError):
    """Nothing to analyse (unknown or empty experiment, missing store); the message is shown as is."""
