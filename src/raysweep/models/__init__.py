"""One registry for every model of the project: ``build_model(name, **config)``.

Why a registry: tests loop over everything registered (forward, backward, NaN check), and a study
names its model by string in a search space, so a new model is one file plus one ``@register``.
Every module of this package is discovered (no hand list); a model defined elsewhere registers
when its module is imported (``Study.load_models`` imports a study's ``model_modules``).
Every model has ``example_input(batch)`` returning a valid input, so that one test covers all.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

_REGISTRY: dict[str, Callable[..., torch.nn.Module]] = {}


def register(
    name: str,
) -> Callable[[Callable[..., torch.nn.Module]], Callable[..., torch.nn.Module]]:
    """Register a model factory under ``name`` (a class or a function returning a module)."""

    def deco(factory: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def build_model(name: str, **config: object) -> torch.nn.Module:
    """Build a registered model; unknown names and config keys fail with one clear message."""
    _load_all()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**config)


def model_names() -> list[str]:
    """All registered model names, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def count_parameters(model: torch.nn.Module) -> int:
    """Trainable parameter count, as logged per trial."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _load_all() -> None:
    # Imported lazily so `import raysweep.models` stays cheap; each import registers its models.
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
