"""A fourth study defined entirely outside the package, as a user would add one: four files.

``model.py`` (the model, registered), ``trainable.py`` (its Task and Tune trainable),
``spaces.py`` (hyperparameters, spaces and the ``Study`` registration), ``report.py`` (a report
section). Nothing in ``src/raysweep`` names it.
"""
