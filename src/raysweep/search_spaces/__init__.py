"""Search spaces as declarative data (Google's tuning playbook: scientific / nuisance / fixed).

A study declares the hyperparameters it takes (``Hyper``: type, legal range, unit) once; each of
its spaces (``Space``) says which values every hyperparameter takes and its role. The sweep driver
turns a space into Ray Tune's form for the chosen search algorithm; nothing else reads it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Role = Literal["scientific", "nuisance", "fixed"]


def typed(text: str) -> Any:
    """A value written as text (``--option``, an MLflow param) typed back: int, then float, else
    the string ("True"/"None" stay strings). The one place such text is parsed."""
    for cast in (int, float):
        try:
            return cast(text)
        except (TypeError, ValueError):
            pass
    return text


class SpaceError(ValueError):
    """An invalid space, override or hyperparameter value; the message is shown to the user."""


@dataclass(frozen=True)
class Hyper:
    """A hyperparameter a study takes, with its legal values (checked before Ray starts)."""

    name: str
    type: type  # int, float or str
    help: str  # meaning and unit, shown by `raysweep spaces`
    low: float | None = None  # inclusive lower bound
    high: float | None = None  # inclusive upper bound
    low_open: bool = False  # lower bound excluded (lr > 0)
    choices: tuple[Any, ...] | None = None

    def parse(self, text: str) -> Any:
        """A value from the command line, typed."""
        try:
            if self.type is int:
                value = float(text)
                if not value.is_integer():
                    raise ValueError
                return int(value)
            return self.type(text)
        except ValueError:
            raise SpaceError(f"{self.name}={text!r} is not a valid {self.type.__name__}") from None

    def check(self, value: Any) -> None:
        """Raise SpaceError if ``value`` is outside what the study supports."""
        if self.choices is not None and value not in self.choices:
            raise SpaceError(f"{self.name}={value!r} is not one of {list(self.choices)}")
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SpaceError(f"{self.name}={value!r} is not a number")
            if self.type is int and float(value) != int(value):
                raise SpaceError(f"{self.name}={value!r} must be an integer")
            if not math.isfinite(value):
                raise SpaceError(f"{self.name}={value!r} must be finite")
            if self.low is not None and (value < self.low or (self.low_open and value <= self.low)):
                op = ">" if self.low_open else ">="
                raise SpaceError(f"{self.name}={value!r} must be {op} {self.low:g}")
            if self.high is not None and value > self.high:
                raise SpaceError(f"{self.name}={value!r} must be <= {self.high:g}")


@dataclass(frozen=True)
class Dim:
    """How a space uses one hyperparameter: its values (a grid / a choice) and its role.

    ``log_range`` (low, high) lets random/optuna/qmc search sample a continuous log-uniform range
    instead of the listed values; grid search always uses ``values``.
    """

    name: str
    values: tuple[Any, ...]
    role: Role = "scientific"
    log_range: tuple[float, float] | None = None


@dataclass(frozen=True)
class Space:
    """A named search space of a study.

    ``stages`` makes it a staged one-factor-at-a-time ablation: stage 0 runs ``baseline``, then
    each stage varies one hyperparameter over its values with the winners of earlier stages fixed.
    ``combinations`` keeps only the grid points that match one of them on the hyperparameters
    they name (e.g. each model at its own depth); such a space runs with grid search only.
    """

    name: str
    description: str
    dims: tuple[Dim, ...]
    epochs: int  # default epochs per trial
    stages: tuple[str, ...] = ()
    baseline: dict[str, Any] = field(default_factory=dict)
    combinations: tuple[dict[str, Any], ...] = ()

    def dim(self, name: str) -> Dim:
        for d in self.dims:
            if d.name == name:
                return d
        raise KeyError(name)

    def varied(self) -> list[str]:
        """Hyperparameters that take more than one value."""
        return [d.name for d in self.dims if len(d.values) > 1 or d.log_range]

    def grid_size(self) -> int:
        if self.combinations:
            return len(configs_of(self))
        return math.prod(len(d.values) for d in self.dims)

    def summary(self) -> str:
        """One line: what the space varies."""
        parts = []
        for d in self.dims:
            if len(d.values) > 1 or d.log_range:
                vals = "/".join(f"{v:g}" if isinstance(v, float) else str(v) for v in d.values)
                parts.append(f"{d.name}∈{{{vals}}}")
        n = self.grid_size()
        kind = f"staged over {', '.join(self.stages)}" if self.stages else f"{n} grid point{'s' * (n != 1)}"
        if self.combinations:
            names = "/".join(dict.fromkeys(k for c in self.combinations for k in c))
            kind += f" ({names} in {len(self.combinations)} listed combinations)"
        return f"{self.description} [{kind}; varies {' '.join(parts) or 'nothing'}; {self.epochs} epochs]"


def with_overrides(space: Space, hypers: dict[str, Hyper], overrides: dict[str, str]) -> Space:
    """``space`` with ``--set name=v1,v2`` applied: parsed, checked, and fixed if one value."""
    dims = list(space.dims)
    baseline = dict(space.baseline)
    for name, text in overrides.items():
        if name not in hypers:
            raise SpaceError(
                f"this study does not take a hyperparameter {name!r}; it takes: {', '.join(sorted(hypers))}"
            )
        values = tuple(hypers[name].parse(t.strip()) for t in text.split(",") if t.strip())
        if not values:
            raise SpaceError(f"--set {name}= needs at least one value")
        role: Role = "fixed" if len(values) == 1 else "scientific"
        new = Dim(name, values, role)
        names = [d.name for d in dims]
        if name in names:
            dims[names.index(name)] = new
        else:
            dims.append(new)
        if name in baseline:
            baseline[name] = values[0]
    stages = tuple(s for s in space.stages if len(next(d for d in dims if d.name == s).values) > 1)
    # An override picking among a combination's values keeps the tie (model=pixelcnn: at its depth);
    # one with other values unties that hyperparameter (layers=3: every model at 3 layers).
    listed = {k: {c.get(k) for c in space.combinations} for c in space.combinations for k in c}
    untied = {n for n in overrides if n in listed and not set(next(d for d in dims if d.name == n).values) <= listed[n]}
    combos = [{k: v for k, v in c.items() if k not in untied} for c in space.combinations]
    combinations = tuple(dict(t) for t in dict.fromkeys(tuple(c.items()) for c in combos if c))
    return replace(space, dims=tuple(dims), baseline=baseline, stages=stages, combinations=combinations)


def validate(space: Space, hypers: dict[str, Hyper]) -> None:
    """Every value of every dimension is legal for the study (SpaceError otherwise)."""
    for d in space.dims:
        if d.name not in hypers:
            raise SpaceError(f"space {space.name!r} uses unknown hyperparameter {d.name!r}")
        for v in d.values:
            hypers[d.name].check(v)
        if d.log_range:
            for v in d.log_range:
                hypers[d.name].check(v)
    for name, v in space.baseline.items():
        hypers[name].check(v)
    for combo in space.combinations:
        for name, v in combo.items():
            if name not in {d.name for d in space.dims} or v not in space.dim(name).values:
                raise SpaceError(f"space {space.name!r} lists the combination {combo}, but {name}={v!r} "
                                 "is not among its values")  # fmt: skip


def to_tune(space: Space) -> dict[str, Any]:
    """Ray Tune's ``param_space`` for a sampling search (random, optuna, qmc): a distribution per
    dimension. Grid search never comes here: it runs the listed points (``configs_of``) instead."""
    from ray import tune

    out: dict[str, Any] = {}
    for d in space.dims:
        if len(d.values) == 1 and not d.log_range:
            out[d.name] = d.values[0]
        elif d.log_range:
            lo, hi = d.log_range
            out[d.name] = tune.loguniform(lo, hi)
        else:
            out[d.name] = tune.choice(list(d.values))
    return out


def configs_of(space: Space) -> list[dict[str, Any]]:
    """Every grid point of ``space`` (for counting and for staged stages)."""
    import itertools

    names = [d.name for d in space.dims]
    points = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(d.values for d in space.dims))]
    if space.combinations:
        points = [p for p in points if any(all(p[k] == v for k, v in c.items()) for c in space.combinations)]
    return points
