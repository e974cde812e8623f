"""raysweep: deep-learning hyperparameter studies as Ray Tune sweeps, tracked in MLflow."""

__version__ = "0.1.0"
