"""The one registry that ties a study's name to its trainable, its spaces and its metric.

Adding a study adds a model, a trainable and a space module, plus one entry here.
Trainables are named by import path so that ``raysweep spaces`` and input checks never import
torch or Ray.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raysweep.search_spaces import Hyper, Space, SpaceError


@dataclass(frozen=True)
class Study:
    name: str
    description: str
    trainable_path: str  # "module:function", a Ray Tune function trainable(config, ctx)
    spaces_module: str  # defines HYPERS and SPACES
    metric: str  # the validation metric that ranks trials
    mode: str  # "max" or "min"
    default_space: str = "quick"

    @property
    def hypers(self) -> dict[str, Hyper]:
        return importlib.import_module(self.spaces_module).HYPERS

    @property
    def spaces(self) -> dict[str, Space]:
        return importlib.import_module(self.spaces_module).SPACES

    def space(self, name: str) -> Space:
        if name not in self.spaces:
            raise SpaceError(
                f"study {self.name!r} has no space {name!r}; its spaces: {', '.join(self.spaces)}"
            )
        return self.spaces[name]

    def trainable(self) -> Callable[..., Any]:
        """The study's trainable, as a light stand-in with its name that imports it in the trial's
        process: the sweep driver never imports torch or the model code (seconds of start-up and
        hundreds of MB of driver memory saved)."""
        module, func = self.trainable_path.split(":")

        def trainable(config: dict[str, Any], ctx: Any) -> Any:
            return getattr(importlib.import_module(module), func)(config, ctx)

        trainable.__name__ = trainable.__qualname__ = func  # Ray names trials after it: train_cnn_...
        return trainable


STUDIES: dict[str, Study] = {
    s.name: s
    for s in (
        Study(
            "cnn",
            "configurable CNN on CIFAR-10 (lr, batch size, filters, depth)",
            "raysweep.trainables.cnn:train_cnn",
            "raysweep.search_spaces.cnn",
            metric="val_acc",
            mode="max",
        ),
    )
}


def get_study(name: str) -> Study:
    """The study called ``name``; SpaceError listing the known ones otherwise."""
    if name not in STUDIES:
        raise SpaceError(f"unknown study {name!r}; known studies: {', '.join(STUDIES)}")
    return STUDIES[name]
