"""What a study is: ``Study`` (one registration) and ``TrialResources`` (what one trial asks Ray for).

Plain data, no torch and no Ray: the registry, the CLI and sweep planning read studies without
loading any model code. Everything heavy is named by import path (``"module:function"``) and
imported only where it runs (a trial's process, the report).

Resources: a trial holds ``--cpus-per-trial``/``--gpus-per-trial`` unless its study names a
``resources`` hook. A study whose trial starts more actors (Ray Train workers) says so there, so
the driver can check the whole request fits the cluster and cap concurrent trials: Ray would
otherwise wait forever for workers that cannot be placed.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raysweep.configuration import is_ranked, ranking_note
from raysweep.search_spaces import Hyper, Space, SpaceError


@dataclass(frozen=True)
class TrialResources:
    """What one trial asks Ray for: its own placement, plus the actors it starts itself."""

    trial: dict[str, float]  # the trial's own request, as for tune.with_resources: {"cpu": .., "gpu": ..}
    workers: tuple[dict[str, float], ...] = ()  # one {"CPU": .., "GPU": ..} per actor the trial starts
    options: dict[str, Any] = field(default_factory=dict)  # runtime options the trial reads (ctx.options)
    hint: str = "lower --cpus-per-trial/--gpus-per-trial"  # what to change when it cannot fit
    summary: str = ""  # one line for the user, e.g. "trial 1 CPU + 2 Ray Train workers x 0.5 CPU"


@dataclass(frozen=True)
class Study:
    """One study: its name, where its parts live, and how its trials are ranked.

    Declared as ``STUDY = Study(...)`` in the study's space module (``search_spaces/<name>.py``),
    which the registry discovers; a study defined elsewhere calls ``studies.register_study``.
    """

    name: str
    description: str
    trainable_path: str  # "module:function", a Ray Tune function trainable(config, ctx)
    spaces_module: str  # defines HYPERS and SPACES
    data_path: str  # "module:function": data source (or None) -> (resolved source, content hash)
    metric: str  # the validation metric that ranks trials
    mode: str  # "max" or "min"
    task_path: str = ""  # "module:Class", the Task (``--dry-run`` times a few of its steps)
    analysis_module: str = ""  # registers the study's report sections (``analysis.registry.section``)
    model_modules: tuple[str, ...] = ()  # modules registering its models, if outside raysweep.models
    default_space: str = "quick"
    stop_metric: str = "val_loss"  # early stopping watches this ...
    stop_mode: str = "min"  # ... in this direction
    resources_path: str | None = None  # "module:function": sweep options -> TrialResources
    result_options: tuple[str, ...] = ()  # --option names that change a trial's result (its identity)
    check_path: str | None = None  # "module:function"(configs, data source, options): pre-flight, raises on a misfit
    # Values that make a trial's validation metric dishonest (e.g. {"split": ("random",)}: validation
    # text inside training windows). Such trials run and are shown, but never rank or win.
    leaky: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def ranked(self, config: dict[str, Any]) -> bool:
        """Whether a trial of ``config`` may be ranked (no leaky value; ``configuration.is_ranked``)."""
        return is_ranked(config, self.leaky)

    def ranking_note(self) -> str:
        """Why some trials are not ranked, for summaries and reports ("" when all are)."""
        return ranking_note(self.leaky)

    def resources(self, opts: Any) -> TrialResources:
        """The per-trial request for sweep options ``opts`` (SpaceError on invalid options)."""
        if self.resources_path:
            return resolve(self.resources_path)(opts)
        return TrialResources(trial={"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial},
                              summary=f"{opts.cpus_per_trial:g} CPU and {opts.gpus_per_trial:g} GPU")  # fmt: skip

    @property
    def hypers(self) -> dict[str, Hyper]:
        return importlib.import_module(self.spaces_module).HYPERS

    @property
    def spaces(self) -> dict[str, Space]:
        return importlib.import_module(self.spaces_module).SPACES

    def space(self, name: str) -> Space:
        if name not in self.spaces:
            raise SpaceError(f"study {self.name!r} has no space {name!r}; its spaces: {', '.join(self.spaces)}")
        return self.spaces[name]

    def trainable(self) -> Callable[..., Any]:
        """The study's trainable, as a light stand-in with its name that imports it in the trial's
        process: the sweep driver never imports torch or the model code (seconds of start-up and
        hundreds of MB of driver memory saved)."""
        path, name = self.trainable_path, self.name

        def trainable(config: dict[str, Any], ctx: Any) -> Any:
            try:
                fn = resolve(path)
            except ModuleNotFoundError as exc:  # the study's package is missing on this node
                raise StudyImportError(not_importable(name, path.split(":")[0], exc.name)) from exc
            return fn(config, ctx)

        trainable.__name__ = trainable.__qualname__ = path.split(":")[1]  # Ray names trials after it
        return trainable

    def load_models(self) -> None:
        """Import the modules registering the study's models outside ``raysweep.models`` (those
        inside are discovered by ``models.build_model``); for code that builds a study's model
        from a checkpoint's spec without importing its trainable."""
        for module in self.model_modules:
            importlib.import_module(module)

    def check(self, configs: list[dict[str, Any]], source: str, options: dict[str, Any]) -> None:
        """What can be checked against the data before Ray starts (e.g. windows longer than the text)."""
        if self.check_path:
            resolve(self.check_path)(configs, source, options)

    def prepare_data(self, data: str | None) -> tuple[str, str]:
        """Resolve and decode the study's data once on this node: (source, content hash)."""
        return resolve(self.data_path)(data)


class StudyImportError(RuntimeError):
    """A study's code cannot be imported where its trials run (a Ray worker on some node)."""


def not_importable(study: str, module: str, missing: str | None, where: str = "") -> str:
    """The one line that says a study's module is missing on a node, and what to do about it."""
    import socket

    what = f"module {module!r}" + (f" (missing: {missing!r})" if missing and missing != module else "")
    return (f"study {study!r}: {what} cannot be imported on Ray node {where or socket.gethostname()}; install the "
            "study's package on every node of the cluster (pip install ...), or start Ray with it on PYTHONPATH")


def resolve(path: str) -> Any:
    """The object at ``"module:name"``."""
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)
