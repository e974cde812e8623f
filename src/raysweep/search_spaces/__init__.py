"""Search spaces as declarative data (Google's tuning playbook: scientific / nuisance / fixed).

A study declares the hyperparameters it takes (``Hyper``: type, legal range, unit) once; each of
its spaces (``Space``) says, per hyperparameter, its listed values or the distribution that a
sampling search draws from (``Dist``), and its role. One language in two places: ``--set
lr=loguniform:1e-4:1e-1`` on the command line, and a space file (YAML, JSON or TOML, the schema of
``space_to_dict``) that ``raysweep spaces STUDY/SPACE --show`` prints for every built-in space.
The sweep driver turns a space into Ray Tune's form for the chosen search algorithm.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from raysweep.text import plural

Role = Literal["scientific", "nuisance", "fixed"]
ROLES = ("scientific", "nuisance", "fixed")


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
    required: bool = False  # the trainable has no default for it: every space must set it

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
class Dist:
    """A distribution that random, qmc and optuna search draw one hyperparameter from.

    Grid search cannot run it (it runs listed values). ``int`` draws whole numbers between
    inclusive bounds, log-uniformly with ``log`` (16..256 filters: each doubling as likely).
    """

    kind: str  # one of DISTRIBUTIONS
    low: float  # inclusive
    high: float  # inclusive
    log: bool = False  # int only: log-uniform over the integers

    def __str__(self) -> str:
        return f"{self.kind}({_num(self.low, self.kind)}, {_num(self.high, self.kind)}{', log' * self.log})"

    def cli(self) -> str:
        """The ``--set`` form: ``loguniform:1e-4:3e-2``, ``int:16:256:log``."""
        return f"{self.kind}:{_num(self.low, self.kind)}:{_num(self.high, self.kind)}{':log' * self.log}"

    def finite(self) -> tuple[int, ...] | None:
        """Every value it can draw, if finitely many (``int``), else None."""
        return tuple(range(int(self.low), int(self.high) + 1)) if self.kind == "int" else None

    def draw(self, rng: random.Random) -> float | int:
        """One draw (the dry run times drawn configurations; the searchers draw their own)."""
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high)
        if self.kind == "loguniform" or self.log:
            value = math.exp(rng.uniform(math.log(self.low), math.log(self.high + (self.kind == "int"))))
            return min(int(value), int(self.high)) if self.kind == "int" else value
        return rng.randint(int(self.low), int(self.high))

    def to_tune(self) -> Any:
        """Ray Tune's domain (its integer bounds exclude the upper one)."""
        from ray import tune

        if self.kind == "uniform":
            return tune.uniform(self.low, self.high)
        if self.kind == "loguniform":
            return tune.loguniform(self.low, self.high)
        return (tune.lograndint if self.log else tune.randint)(int(self.low), int(self.high) + 1)


DISTRIBUTIONS = ("uniform", "loguniform", "int")


def _num(x: float, kind: str = "") -> str:
    """A bound as people write it: ``1e-4`` on a log scale, ``0.5`` or ``16`` otherwise."""
    if kind == "loguniform" and x:
        mantissa, exp = f"{x:e}".split("e")
        return f"{float(mantissa):g}e{int(exp)}"
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class Dim:
    """How a space uses one hyperparameter: listed ``values`` or a distribution ``dist``, and its role.

    Grid search runs every listed value; random/qmc/optuna draw a listed value as a uniform choice,
    or from ``dist``. A space with a ``dist`` runs with those three searches only.
    """

    name: str
    values: tuple[Any, ...] = ()
    role: Role = "scientific"
    dist: Dist | None = None

    def varies(self) -> bool:
        return self.dist is not None or len(self.values) > 1

    def finite(self) -> tuple[Any, ...] | None:
        """Every value the dimension can take, if finitely many."""
        return self.values if self.dist is None else self.dist.finite()

    def shown(self) -> str:
        """``lr ~ loguniform(1e-4, 3e-2)`` or ``lr∈{0.001/0.01}`` or ``lr=0.001``."""
        if self.dist is not None:
            return f"{self.name} ~ {self.dist}"
        vals = "/".join(f"{v:g}" if isinstance(v, float) else str(v) for v in self.values)
        return f"{self.name}∈{{{vals}}}" if len(self.values) > 1 else f"{self.name}={vals}"


def loguniform(low: float, high: float) -> Dist:
    return Dist("loguniform", float(low), float(high))


def uniform(low: float, high: float) -> Dist:
    return Dist("uniform", float(low), float(high))


def integers(low: int, high: int, log: bool = False) -> Dist:
    return Dist("int", int(low), int(high), log)


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
        return [d.name for d in self.dims if d.varies()]

    def sampled(self) -> list[Dim]:
        """Dimensions drawn from a distribution (grid search cannot run them)."""
        return [d for d in self.dims if d.dist is not None]

    def grid_size(self) -> int:
        if self.combinations:
            return len(configs_of(self))
        return math.prod(len(d.values) for d in self.dims)

    def size(self, exclude: tuple[str, ...] = ()) -> int | None:
        """How many distinct configurations the space holds (``exclude``: dimensions left out, e.g.
        the seeds), or None when a continuous distribution makes it infinite."""
        if self.combinations:
            return len({json.dumps({k: v for k, v in c.items() if k not in exclude}, sort_keys=True, default=str)
                        for c in configs_of(self)})  # fmt: skip
        counts = [d.finite() for d in self.dims if d.name not in exclude]
        return None if any(c is None for c in counts) else math.prod(len(c) for c in counts)

    def summary(self) -> str:
        """One line: what the space varies, and how (grid, sampled, or stage by stage)."""
        parts = [d.shown() for d in self.dims if d.varies()]
        if self.stages:
            base = " ".join(f"{k}={v}" for k, v in self.baseline.items())
            kind = f"staged: baseline {base}, then " + " -> ".join(self.dim(s).shown() for s in self.stages)
        elif self.sampled():
            kind = "sampled by random/qmc/optuna search"
        else:
            n = self.grid_size()
            kind = plural(n, "grid point")
        if self.combinations:
            names = "/".join(dict.fromkeys(k for c in self.combinations for k in c))
            kind += f" ({names} in {len(self.combinations)} listed combinations)"
        return f"{self.description} [{kind}; varies {', '.join(parts) or 'nothing'}; {plural(self.epochs, 'epoch')}]"


def parse_dim(hyper: Hyper, text: str, role: Role | None = None) -> Dim:
    """One dimension from its text form: ``a,b,c`` (listed values; also ``choice:a,b,c``),
    ``uniform:LOW:HIGH``, ``loguniform:LOW:HIGH`` or ``int:LOW:HIGH[:log]``. ``role`` defaults to
    fixed for one value, else scientific."""
    name = hyper.name
    head, sep, rest = text.strip().partition(":")
    if sep and head in DISTRIBUTIONS:
        parts = [p.strip() for p in rest.split(":")]
        log = head == "int" and len(parts) == 3 and parts[2] == "log"
        if len(parts) != 2 + log:
            raise SpaceError(f"{name}={text!r}: write a distribution as {head}:LOW:HIGH"
                             + ("[:log]" if head == "int" else ""))  # fmt: skip
        return Dim(name, (), role or "scientific", _dist(name, head, parts[0], parts[1], log))
    if sep and head == "choice":
        text = rest
    values = tuple(dict.fromkeys(hyper.parse(t.strip()) for t in text.split(",") if t.strip()))
    if not values:
        raise SpaceError(f"--set {name}= needs at least one value")
    return Dim(name, values, "fixed" if len(values) == 1 else (role or "scientific"))


def _dist(name: str, kind: str, low: Any, high: Any, log: bool = False) -> Dist:
    """A ``Dist`` from bounds as written (text or numbers); SpaceError naming the bad bound."""
    bounds = []
    for b in (low, high):
        try:
            x = float(b)
        except (TypeError, ValueError):
            raise SpaceError(f"{name} ~ {kind}: bound {b!r} is not a number") from None
        if kind == "int":
            if not x.is_integer():
                raise SpaceError(f"{name} ~ int: bound {b!r} is not a whole number")
            x = int(x)
        bounds.append(x)
    if log and kind != "int":
        raise SpaceError(f"{name} ~ {kind}: only int takes log (use loguniform for a float)")
    return Dist(kind, bounds[0], bounds[1], bool(log))


def check_dist(hyper: Hyper, dist: Dist) -> None:
    """A distribution's kind fits the hyperparameter and its bounds lie inside the study's limits."""
    name, what = hyper.name, f"{hyper.name} ~ {dist}"
    if dist.kind not in DISTRIBUTIONS:
        raise SpaceError(f"{name}: unknown distribution {dist.kind!r}; use one of {', '.join(DISTRIBUTIONS)}")
    if hyper.choices is not None or hyper.type is str:
        raise SpaceError(f"{what}: {name} takes listed values only ({name}=a,b), not a distribution")
    if dist.kind == "int" and hyper.type is not int:
        raise SpaceError(f"{what}: {name} is a float; draw it with uniform:LOW:HIGH or loguniform:LOW:HIGH")
    if dist.kind != "int" and hyper.type is int:
        raise SpaceError(f"{what}: {name} is a whole number; draw it with int:LOW:HIGH[:log]")
    if not dist.low < dist.high:
        raise SpaceError(f"{what}: the low bound must be below the high one")
    if (dist.kind == "loguniform" or dist.log) and dist.low <= 0:
        raise SpaceError(f"{what}: a log scale needs a low bound > 0")
    for bound in (dist.low, dist.high):
        try:
            hyper.check(bound)
        except SpaceError as exc:
            raise SpaceError(f"{what}: bound {exc}") from None


def with_overrides(space: Space, hypers: dict[str, Hyper], overrides: dict[str, str]) -> Space:
    """``space`` with ``--set name=v1,v2`` (or ``name=loguniform:lo:hi``...) applied: parsed,
    checked, and fixed if one value. A dimension keeps its role (a nuisance stays a nuisance)."""
    dims = list(space.dims)
    baseline = dict(space.baseline)
    for name, text in overrides.items():
        if name not in hypers:
            raise SpaceError(
                f"this study does not take a hyperparameter {name!r}; it takes: {', '.join(sorted(hypers))}"
            )
        names = [d.name for d in dims]
        old = dims[names.index(name)].role if name in names else None
        new = parse_dim(hypers[name], text, old if old != "fixed" else None)
        if name in names:
            dims[names.index(name)] = new
        else:
            dims.append(new)
        if name in baseline and new.values:
            baseline[name] = new.values[0]
    stages = tuple(s for s in space.stages if next(d for d in dims if d.name == s).varies())
    # An override picking among a combination's values keeps the tie (model=pixelcnn: at its depth);
    # one with other values unties that hyperparameter (layers=3: every model at 3 layers).
    listed = {k: {c.get(k) for c in space.combinations} for c in space.combinations for k in c}
    untied = {n for n in overrides if n in listed and not set(next(d for d in dims if d.name == n).values) <= listed[n]}
    combos = [{k: v for k, v in c.items() if k not in untied} for c in space.combinations]
    combinations = tuple(dict(t) for t in dict.fromkeys(tuple(c.items()) for c in combos if c))
    return replace(space, dims=tuple(dims), baseline=baseline, stages=stages, combinations=combinations)


def validate(space: Space, hypers: dict[str, Hyper], complete: bool = True) -> None:
    """Every value and every distribution of every dimension is legal for the study, and (``complete``)
    every required hyperparameter is set (SpaceError otherwise)."""
    names = [d.name for d in space.dims]
    for d in space.dims:
        if d.name not in hypers:
            raise SpaceError(f"space {space.name!r} uses unknown hyperparameter {d.name!r}; "
                             f"this study takes: {', '.join(sorted(hypers))}")  # fmt: skip
        if d.role not in ROLES:
            raise SpaceError(f"space {space.name!r}: {d.name} has role {d.role!r}; use one of {', '.join(ROLES)}")
        if (d.dist is None) == (not d.values):
            raise SpaceError(f"space {space.name!r}: {d.name} needs either listed values or a distribution")
        for v in d.values:
            hypers[d.name].check(v)
        if d.dist is not None:
            check_dist(hypers[d.name], d.dist)
    if len(set(names)) != len(names):
        raise SpaceError(f"space {space.name!r} names a hyperparameter twice")
    if complete and (missing := [n for n, h in hypers.items() if h.required and n not in names]):
        raise SpaceError(f"space {space.name!r} does not set {', '.join(missing)}, which the study's trials "
                         f"need; add {'them' if len(missing) > 1 else 'it'} to the space, or --set "
                         f"{missing[0]}=VALUE")  # fmt: skip
    if "seed" in names and space.dim("seed").dist is not None:
        raise SpaceError(f"space {space.name!r}: list the seeds (seed: [0, 1]); every configuration trains "
                         "with each of them, so they cannot be drawn")  # fmt: skip
    for s in space.stages:
        if s not in names:
            raise SpaceError(f"space {space.name!r} has a stage {s!r} but no such dimension")
        if space.dim(s).dist is not None:
            raise SpaceError(f"space {space.name!r}: stage {s} draws {space.dim(s).shown()}; a stage of an "
                             "ablation runs listed values")  # fmt: skip
    for name, v in space.baseline.items():
        if name not in hypers:
            raise SpaceError(f"space {space.name!r}: its baseline sets unknown hyperparameter {name!r}")
        hypers[name].check(v)
    for combo in space.combinations:
        for name, v in combo.items():
            if name not in names or v not in space.dim(name).values:
                raise SpaceError(f"space {space.name!r} lists the combination {combo}, but {name}={v!r} "
                                 "is not among its values")  # fmt: skip


def to_tune(space: Space, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Ray Tune's ``param_space`` for a sampling search (random, optuna, qmc): a distribution per
    varied dimension, the value of each fixed one (``exclude``: left out, e.g. the seeds, which
    every configuration trains with). Grid search never comes here: it runs ``configs_of``."""
    from ray import tune

    out: dict[str, Any] = {}
    for d in space.dims:
        if d.name in exclude:
            continue
        if d.dist is not None:
            out[d.name] = d.dist.to_tune()
        elif len(d.values) == 1:
            out[d.name] = d.values[0]
        else:
            out[d.name] = tune.choice(list(d.values))
    return out


def configs_of(space: Space) -> list[dict[str, Any]]:
    """Every grid point of ``space`` (for counting and for staged stages); needs listed values."""
    if space.sampled():
        raise SpaceError(f"space {space.name!r} draws {space.sampled()[0].shown()}: it has no grid")
    names = [d.name for d in space.dims]
    points = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(d.values for d in space.dims))]
    if space.combinations:
        points = [p for p in points if any(all(p[k] == v for k, v in c.items()) for c in space.combinations)]
    return points


def draw_configs(space: Space, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` configurations drawn at random (seeded): what a dry run times for a sampling search."""
    rng = random.Random(seed)
    return [{d.name: d.dist.draw(rng) if d.dist is not None else rng.choice(d.values) for d in space.dims}
            for _ in range(n)]  # fmt: skip


# ---- space files: the schema of the built-in spaces, as YAML / JSON / TOML ----

FILE_KEYS = ("study", "name", "description", "epochs", "dims", "stages", "baseline", "combinations")
DIM_KEYS = ("values", "distribution", "low", "high", "log", "role")
FILE_SUFFIXES = (".yaml", ".yml", ".json", ".toml")


def is_space_file(name: str) -> bool:
    """Whether ``--space`` names a file rather than a built-in space."""
    return name.lower().endswith(FILE_SUFFIXES)


def space_to_dict(space: Space, study: str) -> dict[str, Any]:
    """The space as plain data, in the schema ``space_from_dict`` reads (``raysweep spaces --show``)."""
    dims: dict[str, Any] = {}
    for d in space.dims:
        if d.dist is not None:
            spec: dict[str, Any] = {"distribution": d.dist.kind, "low": d.dist.low, "high": d.dist.high}
            if d.dist.log:
                spec["log"] = True
        else:
            spec = {"values": list(d.values)}
        dims[d.name] = {**spec, "role": d.role}
    out: dict[str, Any] = {"study": study, "name": space.name, "description": space.description,
                           "epochs": space.epochs, "dims": dims}  # fmt: skip
    if space.stages:
        out["stages"] = list(space.stages)
    if space.baseline:
        out["baseline"] = dict(space.baseline)
    if space.combinations:
        out["combinations"] = [dict(c) for c in space.combinations]
    return out


def space_to_yaml(space: Space, study: str) -> str:
    """The space as a YAML space file, ready to copy, edit and run with ``--space FILE``."""
    import yaml

    def dump(data: Any, flow: bool | None = None) -> str:
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=flow, width=10**6, allow_unicode=True)

    data = space_to_dict(space, study)
    dims = data.pop("dims")
    tail = {k: data.pop(k) for k in ("stages", "baseline", "combinations") if k in data}
    body = dump(data, False) + "dims:\n" + "".join(f"  {k}: {dump(v, True).strip()}\n" for k, v in dims.items())
    body += dump(tail) if tail else ""
    how = " --search optuna --num-samples 20" if space.sampled() else ""
    head = (f"# raysweep space file ({study}/{space.name}); run it: raysweep sweep {study} --space FILE.yaml{how}\n"
            "# a dimension: values: [..] (grid points; a uniform choice for random/qmc/optuna) or\n"
            "#   distribution: uniform | loguniform | int (low, high inclusive; int also log: true);\n"
            "#   role: scientific | nuisance | fixed\n")  # fmt: skip
    return head + body


def _typed(hyper: Hyper, value: Any) -> Any:
    """A value read from a file, typed as the hyperparameter (YAML reads ``1e-4`` as text)."""
    if isinstance(value, str) and hyper.type is not str:
        return hyper.parse(value)
    if isinstance(value, bool):
        return value
    if hyper.type is float and isinstance(value, int):
        return float(value)
    if hyper.type is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _dim_from_data(hyper: Hyper, spec: Any) -> Dim:
    name = hyper.name
    if isinstance(spec, str):
        return parse_dim(hyper, spec)
    if isinstance(spec, list):
        values = tuple(dict.fromkeys(_typed(hyper, v) for v in spec))
        return Dim(name, values, "fixed" if len(values) == 1 else "scientific")
    if not isinstance(spec, dict):
        return Dim(name, (_typed(hyper, spec),), "fixed")
    unknown = [k for k in spec if k not in DIM_KEYS]
    if unknown:
        raise SpaceError(f"dimension {name}: unknown key {unknown[0]!r}; a dimension has {', '.join(DIM_KEYS)}")
    role = spec.get("role")
    if ("values" in spec) == ("distribution" in spec):
        raise SpaceError(f"dimension {name}: give either values: [..] or distribution: (with low and high)")
    if "values" in spec:
        raw = spec["values"] if isinstance(spec["values"], list) else [spec["values"]]
        values = tuple(dict.fromkeys(_typed(hyper, v) for v in raw))
        return Dim(name, values, role or ("fixed" if len(values) == 1 else "scientific"))
    kind = spec["distribution"]
    if kind == "choice":
        raise SpaceError(f"dimension {name}: a choice is listed values: values: [a, b]")
    if kind not in DISTRIBUTIONS:
        raise SpaceError(f"dimension {name}: unknown distribution {kind!r}; use one of {', '.join(DISTRIBUTIONS)}")
    if "low" not in spec or "high" not in spec:
        raise SpaceError(f"dimension {name}: distribution {kind} needs low and high")
    return Dim(name, (), role or "scientific", _dist(name, kind, spec["low"], spec["high"], bool(spec.get("log"))))


def space_from_dict(data: Any, hypers: dict[str, Hyper], name: str = "", study: str = "") -> Space:
    """A Space from plain data in the schema of ``space_to_dict``; SpaceError with one line when it
    does not fit (then ``validate`` checks it against the study's limits, as for built-in spaces)."""
    if not isinstance(data, dict):
        raise SpaceError("a space file holds a mapping: study, name, description, epochs, dims, ...")
    unknown = [k for k in data if k not in FILE_KEYS]
    if unknown:
        raise SpaceError(f"unknown key {unknown[0]!r}; a space file has: {', '.join(FILE_KEYS)}")
    if study and data.get("study", study) != study:
        raise SpaceError(f"it is a space of study {data['study']!r}, not {study!r}")
    dims_data = data.get("dims")
    if not isinstance(dims_data, dict) or not dims_data:
        raise SpaceError("dims: needs a mapping from each hyperparameter to its values or distribution")
    dims = []
    for key, spec in dims_data.items():
        if key not in hypers:
            raise SpaceError(f"unknown hyperparameter {key!r}; this study takes: {', '.join(sorted(hypers))}")
        dims.append(_dim_from_data(hypers[key], spec))
    epochs = data.get("epochs", 1)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise SpaceError(f"epochs: must be a whole number >= 1, got {epochs!r}")
    baseline = data.get("baseline") or {}
    combos = data.get("combinations") or []
    if not isinstance(baseline, dict) or not isinstance(combos, list) or not all(isinstance(c, dict) for c in combos):
        raise SpaceError("baseline: is a mapping, combinations: a list of mappings")
    for k in [*baseline, *(k for c in combos for k in c)]:
        if k not in hypers:
            raise SpaceError(f"unknown hyperparameter {k!r}; this study takes: {', '.join(sorted(hypers))}")
    return Space(
        str(data.get("name") or name), str(data.get("description", "")), tuple(dims), epochs,
        stages=tuple(str(s) for s in data.get("stages") or ()),
        baseline={k: _typed(hypers[k], v) for k, v in baseline.items()},
        combinations=tuple({k: _typed(hypers[k], v) for k, v in c.items()} for c in combos),
    )  # fmt: skip


def read_space_file(path: str | Path) -> tuple[Any, bytes]:
    """A space file's data (by its suffix: YAML, JSON or TOML) and its exact bytes."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SpaceError(f"space file {path} does not exist")
    raw = p.read_bytes()
    if p.suffix.lower() == ".toml":
        try:
            import tomllib  # noqa: F401  (Python 3.11+)
        except ImportError:
            raise SpaceError(f"space file {path}: TOML needs Python 3.11 or later; write it as YAML or JSON") from None
    try:
        if p.suffix.lower() == ".json":
            return json.loads(raw), raw
        if p.suffix.lower() == ".toml":
            import tomllib

            return tomllib.loads(raw.decode()), raw
        import yaml

        return yaml.safe_load(raw), raw
    except Exception as exc:  # any parser's error, as one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpaceError(f"space file {path} is not valid {p.suffix.lstrip('.').upper()}: {first}") from None


def load_space_file(path: str | Path, hypers: dict[str, Hyper], study: str = "") -> Space:
    """The Space in file ``path`` (named after the file unless it says ``name:``), validated."""
    data, _ = read_space_file(path)
    try:
        space = space_from_dict(data, hypers, name=Path(path).stem, study=study)
        validate(space, hypers, complete=False)  # --set may still add what it lacks; plan_sweep checks
    except SpaceError as exc:
        raise SpaceError(f"space file {path}: {exc}") from None
    return space


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()
