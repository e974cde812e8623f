"""The source report as data: ``report.json`` (``raysweep report --against report``)."""
