"""A fourth study defined entirely outside the package, as a user would add one: four files.

``model.py`` (the model, registered), ``trainable.py`` (its Task and Tune trainable),
``spaces.py`` (hyperparameters, spaces and ``STUDY``), ``report.py`` (a report section), plus
``pyproject.toml``, whose ``raysweep.studies`` entry point makes the installed package a study.
Nothing in ``src/raysweep`` names it.
"""
