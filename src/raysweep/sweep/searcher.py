"""The searcher that every sampling search runs through: each configuration once, with every seed.

Ray's searchers (``OptunaSearch`` with TPE, QMC or random sampling) propose configurations. This
wrapper turns each proposal into one Tune trial per seed (the same seeds for every configuration,
so they pair), and tells the inner searcher the mean over a configuration's seeds, as Ray's
``Repeater`` does; unlike ``Repeater``, a trial's identity stays per seed (its own config, Tune
trial, MLflow run and checkpoint), so a resume reruns nothing.

A sampler may propose a configuration again (TPE over a finite space does). It is never trained
twice: the inner searcher is handed the recorded mean score (or that score once the configuration
finishes, while it still trains) and asked again. A finite space whose sampler keeps repeating
itself is completed from the configurations not yet proposed, in order. Imported by
``tuner`` only (it imports Ray).
"""

from __future__ import annotations

import math
import pickle
import statistics
from dataclasses import dataclass, field
from typing import Any

from ray.tune.search import Searcher

from raysweep.sweep.plan import Draws, config_id

MAX_REPEATS = 100  # proposals in a row that repeat a configuration before the wrapper stops asking


@dataclass
class _Config:
    """One configuration of this search: its inner-searcher trials and its seeds' scores."""

    config: dict[str, Any]  # without seed; constants included
    inner_ids: list[str]  # the inner searcher's trials standing for it (a repeat adds one)
    scores: dict[Any, float | None] = field(default_factory=dict)  # seed -> score (None: failed)
    told: bool = False  # the inner searcher has its mean

    def mean(self) -> float | None:
        finite = [s for s in self.scores.values() if s is not None and math.isfinite(s)]
        return statistics.fmean(finite) if finite else None


class SeededSearcher(Searcher):
    """``inner`` proposes configurations of the sampled dimensions; this emits each with every seed.

    ``draws`` says how many configurations to start (``new``), which to finish first and what an
    earlier attempt recorded; ``constants`` are the fixed values (part of a configuration's
    identity); ``choices`` lists every value of each sampled dimension when the space is finite
    (None otherwise); ``inner`` None: nothing is sampled, the configurations come from ``choices``.
    """

    def __init__(self, inner: Searcher | None, draws: Draws, constants: dict[str, Any],
                 choices: dict[str, tuple[Any, ...]] | None, metric: str, mode: str) -> None:  # fmt: skip
        super().__init__(metric=metric, mode=mode)
        self.inner, self.seeds, self.constants, self.choices = inner, draws.seeds, constants, choices
        self.budget = len(draws.first) + draws.new  # configurations to start in this run
        self.first = list(draws.first)
        self.configs: dict[tuple, _Config] = {}
        for cid, scores in draws.known.items():  # an earlier attempt's: complete ones are never proposed again
            c = _Config(draws.configs[cid], [], dict(scores))
            c.told = all(s in scores for s in self.seeds)
            self.configs[cid] = c
        self.started = 0
        self.queue: list[tuple[tuple, Any]] = []  # (config id, seed) still to hand to Tune
        self.trial_of: dict[str, tuple[tuple, Any]] = {}  # Tune trial id -> (config id, seed)
        self.repeats = 0  # proposals answered from the record instead of trained
        self._inner_n = 0
        self._next_choice = 0  # position in the finite space's enumeration (a repeating sampler's fallback)
        if inner is not None:  # what the earlier attempt finished: the searcher starts from it
            for c in self.configs.values():
                if c.told and c.mean() is not None:
                    try:
                        inner.add_evaluated_point(self._sampled(c.config), c.mean())
                    except (ValueError, KeyError, TypeError, RuntimeError):  # outside this space: not its to learn
                        pass

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        if self.inner is not None:
            self.inner.set_search_properties(metric, mode, config, **spec)
        return True

    def _sampled(self, config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if k not in self.constants}

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self.queue:
            if self.started >= self.budget:
                return Searcher.FINISHED
            cid = self._next_config()
            if cid is None:
                return Searcher.FINISHED
            self.started += 1
            done = self.configs[cid].scores
            self.queue = [(cid, s) for s in self.seeds if s not in done]
        cid, seed = self.queue.pop(0)
        self.trial_of[trial_id] = (cid, seed)
        config = dict(self.configs[cid].config)
        return config if seed is None else {**config, "seed": seed}

    def _next_config(self) -> tuple | None:
        """A configuration not proposed before: the resume's first, else the inner searcher's."""
        if self.first:
            config = {**self.constants, **self.first.pop(0)}
            cid = config_id(config)
            self.configs.setdefault(cid, _Config(config, []))
            return cid
        for _ in range(MAX_REPEATS if self.inner is not None else 0):
            self._inner_n += 1
            inner_id = f"config_{self._inner_n}"
            proposal = self.inner.suggest(inner_id)
            if not isinstance(proposal, dict):
                break
            config = {**self.constants, **proposal}
            cid = config_id(config)
            if cid not in self.configs:
                self.configs[cid] = _Config(config, [inner_id])
                return cid
            seen = self.configs[cid]  # a repeat: never trained again
            self.repeats += 1
            seen.inner_ids.append(inner_id)
            if seen.told:  # recorded: hand the sampler the score now; else when the configuration finishes
                self._tell(inner_id, seen.mean())
        return self._unproposed()

    def _unproposed(self) -> tuple | None:
        """The next configuration of a finite space that was not proposed yet, in enumeration order."""
        if self.choices is None:
            return None
        names = list(self.choices)
        sizes = [len(self.choices[n]) for n in names]
        while self._next_choice < math.prod(sizes):
            i, self._next_choice = self._next_choice, self._next_choice + 1
            point = {}
            for n, size in zip(reversed(names), reversed(sizes), strict=True):
                i, j = divmod(i, size)
                point[n] = self.choices[n][j]
            config = {**self.constants, **{n: point[n] for n in names}}
            cid = config_id(config)
            if cid not in self.configs:
                self.configs[cid] = _Config(config, [])
                return cid
        return None

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.trial_of:
            return
        cid, seed = self.trial_of.pop(trial_id)
        c = self.configs[cid]
        score = None
        if result and not error and not result.get("diverged"):
            value = result.get(f"best_{self.metric}", result.get(self.metric))
            score = float(value) if isinstance(value, (int, float)) else None
        c.scores[seed] = score
        if not c.told and all(s in c.scores for s in self.seeds):  # every seed is in: the mean
            c.told = True
            mean = c.mean()
            for inner_id in c.inner_ids:
                self._tell(inner_id, mean)
            if not c.inner_ids and mean is not None and self.inner is not None:
                try:  # a configuration the sampler did not propose (a resume's, the fallback's)
                    self.inner.add_evaluated_point(self._sampled(c.config), mean)
                except (ValueError, KeyError, TypeError, RuntimeError):
                    pass

    def _tell(self, inner_id: str, mean: float | None) -> None:
        if mean is None:
            self.inner.on_trial_complete(inner_id, None, error=True)
        else:
            self.inner.on_trial_complete(inner_id, {self.metric: mean})

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
