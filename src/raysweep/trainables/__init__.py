"""Ray Tune function trainables, one per study; each builds a Task for ``raysweep.training``."""
