"""The shared training loop: resume, early stopping, divergence, run status (no Ray needed)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from fakes import Stop, StopAfterFirstReport, recording_layers
from torch._dynamo import list_backends, register_backend

from raysweep import tracking
from raysweep.models.cnn import DROPOUT
from raysweep.trainables.cnn import CnnTask
from raysweep.training import LocalSession, TrialContext, loop, run_trial

CFG = {"lr": 0.003, "batch_size": 64, "filters": 8, "layers": 3, "seed": 0}


def _ctx(epochs: int, **kw: Any) -> TrialContext:
    return TrialContext(study="cnn", data="synthetic", epochs=epochs, metric="val_acc", mode="max", **kw)


def test_cnn_trial_reports_each_epoch_and_tests_at_the_end(tmp_path) -> None:
    s = LocalSession(workdir=str(tmp_path), cpus=1)
    last = run_trial(CnnTask, CFG, _ctx(2), s)
    assert [r["epoch"] for r in s.results] == [1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr"} <= set(s.results[0])
    assert "test_acc" not in s.results[0] and 0.0 <= last["test_acc"] <= 1.0
    assert last["best_val_acc"] > 0.3  # it learns (chance is 0.1 on the synthetic set)
    assert "test_f1_macro" in last and "test_precision_cat" in last


@pytest.mark.parametrize(
    ("option", "trained_s", "drawn"),
    [(None, 0.0, False), (None, loop.FIGURE_MIN_TRAIN_S, True), (1, 0.0, True), (0, 1e9, False)],
)
def test_a_trial_draws_its_figures_only_where_they_cost_little(tmp_path, tracking_uri, monkeypatch, option,
                                                                trained_s, drawn) -> None:  # fmt: skip
    """A short trial logs the confusion matrix's data, which the report draws, but not its picture."""
    monkeypatch.setattr(loop, "FIGURE_MIN_TRAIN_S", loop.FIGURE_MIN_TRAIN_S - trained_s)  # as if it trained so long
    info = tracking.start_sweep_run(tracking_uri, "t", "sweep", {}, {})
    options = {} if option is None else {"figures": option}
    run_trial(CnnTask, CFG, _ctx(1, tracking=info, options=options), LocalSession(workdir=str(tmp_path), cpus=1))
    (run,) = tracking.child_runs(tracking_uri, info)
    artifacts = {a.path for a in tracking.client(tracking_uri).list_artifacts(run.info.run_id)}
    assert "confusion_matrix.json" in artifacts
    assert ("confusion_matrix.png" in artifacts) == drawn


def test_resume_continues_from_checkpoint_and_handles_zero_epochs_left(tmp_path) -> None:
    s = LocalSession(workdir=str(tmp_path), cpus=1)
    run_trial(CnnTask, CFG, _ctx(1), s)  # a 1-epoch run leaves a checkpoint...
    s2 = LocalSession(workdir=str(tmp_path), cpus=1)
    run_trial(CnnTask, CFG, _ctx(1), s2)  # ...resumed with zero epochs left: no training
    assert len(s2.results) == 1 and s2.results[0]["epoch"] == 1
    assert s2.results[0]["test_acc"] == s.results[0]["test_acc"]


def test_interrupted_trial_resumes_at_the_next_epoch(tmp_path) -> None:
    try:
        run_trial(CnnTask, CFG, _ctx(3), StopAfterFirstReport(workdir=str(tmp_path), cpus=1))
    except Stop:
        pass
    s = LocalSession(workdir=str(tmp_path), cpus=1)
    run_trial(CnnTask, CFG, _ctx(3), s)
    assert [r["epoch"] for r in s.results] == [2, 3]


class _FakeTask:
    """A task whose losses follow a script: for early stopping and divergence."""

    def __init__(self, val_losses: list[float]) -> None:
        self.model = torch.nn.Linear(2, 2)
        self.val_losses = val_losses
        self.epoch = 0

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.epoch = epoch
        return {"train_loss": self.val_losses[epoch]}

    def evaluate(self) -> dict[str, float]:
        v = self.val_losses[self.epoch]
        return {"val_loss": v, "val_acc": 0.0 if math.isnan(v) else 1.0 / (1.0 + v)}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])

    def finish(self, logger) -> dict[str, float]:
        return {"test_acc": 0.5}

    def model_spec(self) -> dict:
        return {"name": "none", "config": {}}


def test_early_stopping_on_val_loss_with_patience(tmp_path) -> None:
    losses = [1.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1]
    s = LocalSession(workdir=str(tmp_path), cpus=1)
    last = run_trial(lambda c, x, d: _FakeTask(losses), {"seed": 0}, _ctx(8, patience=2), s)
    assert len(s.results) == 4  # best at epoch 2, two stale epochs, stop
    assert last["best_epoch"] == 2 and last["test_acc"] == 0.5


def test_diverging_trial_is_marked_diverged_and_its_run_failed(tmp_path, tracking_uri) -> None:
    info = tracking.start_sweep_run(tracking_uri, "t", "sweep", {}, {})
    s = LocalSession(workdir=str(tmp_path), cpus=1)
    losses = [1.0, float("nan"), 0.5]
    last = run_trial(lambda c, x, d: _FakeTask(losses), {"seed": 0}, _ctx(3, tracking=info), s)
    assert last["diverged"] == 1.0 and len(s.results) == 2
    (run,) = tracking.child_runs(tracking_uri, info)
    assert run.info.status == "FAILED"
    assert run.data.tags[tracking.OUTCOME_TAG] == "diverged"
    assert "non-finite loss at epoch 2" in run.data.tags[tracking.REASON_TAG]


def test_bf16_autocast_path_runs_on_cpu(tmp_path, tracking_uri) -> None:
    """``amp=bf16``: the trial's own training forward computes in bf16, and the run records the choice."""
    info = tracking.start_sweep_run(tracking_uri, "t", "sweep", {}, {})
    seen: list[tuple[bool, str, torch.dtype]] = []
    tasks: list[CnnTask] = []
    s = LocalSession(workdir=str(tmp_path), cpus=1)
    last = run_trial(recording_layers(CnnTask, seen, tasks), CFG, _ctx(1, amp="bf16", tracking=info), s)
    training = [(layer, dtype) for grad, layer, dtype in seen if grad]
    layers = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in tasks[0].model.modules())
    assert len(training) == layers * tasks[0].steps_per_epoch  # every layer of every training step...
    assert {dtype for _, dtype in training} == {torch.bfloat16}, training  # ...computed in bf16
    assert {dtype for grad, _, dtype in seen if not grad} == {torch.bfloat16}  # validation and test too
    assert math.isfinite(last["val_loss"])
    (run,) = tracking.child_runs(tracking_uri, info)
    assert run.data.params["amp"] == "bf16" and run.data.params["amp_reason"] == "--amp bf16 asked for"


_GRAPH_CALLS: list[int] = []  # one entry per call of a graph compiled by the counting backend


def _counting_backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
    """A torch.compile backend that runs the captured graph eagerly and counts its calls."""

    def run(*args: Any) -> Any:
        _GRAPH_CALLS.append(1)
        return gm.forward(*args)

    return run


if "raysweep_counting" not in list_backends(exclude_tags=()):  # once, should the module be imported again
    register_backend(_counting_backend, "raysweep_counting")


def test_compile_option_trains_through_torch_compile(tmp_path) -> None:
    """``--option compile=BACKEND``: every training step's forward is the graph torch.compile captured."""
    _GRAPH_CALLS.clear()
    tasks: list[CnnTask] = []
    s = LocalSession(workdir=str(tmp_path), cpus=1)
    ctx = _ctx(1, options={"compile": "raysweep_counting"})
    last = run_trial(lambda c, x, d: tasks.append(CnnTask(c, x, d)) or tasks[-1], CFG, ctx, s)
    assert len(_GRAPH_CALLS) == tasks[0].steps_per_epoch > 0  # validation and test run the plain module
    assert last["best_val_acc"] > 0.2  # and it learned through it (chance 0.1)


def test_device_resident_data_path_trains(tmp_path, monkeypatch) -> None:
    """The CUDA path (whole training set as a tensor on the device, indices moved once per epoch),
    exercised on the CPU: it reads the same images as the memory-map path, and never the memory map."""

    import raysweep.trainables.cnn as cnn_trainable

    mapped = CnnTask(CFG, _ctx(1), torch.device("cpu"))
    task = CnnTask(CFG, _ctx(1), torch.device("cpu"))
    task.images = torch.from_numpy(np.ascontiguousarray(task.images))
    task.labels = torch.from_numpy(np.asarray(task.labels))
    idx = np.sort(task.val_idx[:32])
    for got, want in zip(task._batch(torch.from_numpy(idx)), mapped._batch(idx), strict=True):
        assert torch.equal(got, want)

    reads: list[int] = []  # batches the memory-map path read (it sorts each batch's indices first)

    class _CountingNumpy:
        def __getattr__(self, name: str) -> Any:
            return getattr(np, name)

        @staticmethod
        def sort(a: Any, *args: Any, **kw: Any) -> Any:
            reads.append(len(a))
            return np.sort(a, *args, **kw)

    monkeypatch.setattr(cnn_trainable, "np", _CountingNumpy())
    train = task.train_epoch(0)
    val = task.evaluate()
    assert reads == []  # every training and validation batch came from the resident tensor
    assert math.isfinite(train["train_loss"]) and 0.0 <= train["train_acc"] <= 1.0 and math.isfinite(val["val_loss"])
    mapped.evaluate()
    assert reads  # the counter sees the memory-map path when it runs


class _ScoreTask(_FakeTask):
    """A task with its own metric names: no train_loss/val_loss at all."""

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.epoch = epoch
        return {"fit": 1.0}

    def evaluate(self) -> dict[str, float]:
        return {"score": self.val_losses[self.epoch], "other": 0.0}


def test_the_loop_takes_its_metric_names_from_the_context(tmp_path) -> None:
    scores = [0.1, 0.5, 0.4, 0.3, 0.9]
    s = LocalSession(workdir=str(tmp_path), cpus=1)
    ctx = TrialContext(study="x", data="synthetic", epochs=5, metric="score", mode="max", patience=2,
                       stop_metric="score", stop_mode="max")  # fmt: skip
    last = run_trial(lambda c, x, d: _ScoreTask(scores), {"seed": 0}, ctx, s)
    assert len(s.results) == 4 and last["best_epoch"] == 2 and last["best_score"] == 0.5


def test_any_non_finite_metric_is_divergence_and_the_reason_names_it(tmp_path, tracking_uri) -> None:
    info = tracking.start_sweep_run(tracking_uri, "t", "sweep", {}, {})
    ctx = TrialContext(study="x", data="synthetic", epochs=3, metric="other", mode="max", stop_metric="other",
                       tracking=info)  # fmt: skip
    s = LocalSession(workdir=str(tmp_path), cpus=1)
    last = run_trial(lambda c, x, d: _ScoreTask([1.0, float("inf"), 0.5]), {"seed": 0}, ctx, s)
    assert last["diverged"] == 1.0 and "score" not in last and len(s.results) == 2
    (run,) = tracking.child_runs(tracking_uri, info)
    assert run.data.tags[tracking.OUTCOME_TAG] == "diverged"
    assert "non-finite metric at epoch 2 (score inf)" in run.data.tags[tracking.REASON_TAG]


class _ExitInReport(LocalSession):
    """Exits the trial in its first report: as Tune's stop does (``tune.report`` raises SystemExit), or not."""

    def __init__(self, by_tune: bool, **kw: Any) -> None:
        super().__init__(**kw)
        self.by_tune = by_tune

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        self.stopped = self.by_tune
        raise SystemExit(0)


@pytest.mark.parametrize("by_tune", [True, False])
def test_a_trial_tune_stopped_leaves_its_run_to_the_driver(by_tune, tmp_path, tracking_uri) -> None:
    """The exiting actor may cut the trial's thread off at any line, so the trial writes nothing once Tune
    stopped it (``tuner.close_runs`` closes the run); an exit of its own still closes the run KILLED."""
    info = tracking.start_sweep_run(tracking_uri, "t", "sweep", {}, {})
    ctx = TrialContext(study="x", data="synthetic", epochs=3, metric="score", mode="max", stop_metric="score",
                       tracking=info)  # fmt: skip
    with pytest.raises(SystemExit):
        run_trial(lambda c, x, d: _ScoreTask([1.0, 2.0, 3.0]), {"seed": 0}, ctx,
                  _ExitInReport(by_tune, workdir=str(tmp_path), cpus=1))  # fmt: skip
    (run,) = tracking.child_runs(tracking_uri, info)
    if by_tune:
        assert run.info.status == "RUNNING" and tracking.OUTCOME_TAG not in run.data.tags
    else:
        assert run.info.status == "KILLED" and run.data.tags[tracking.OUTCOME_TAG] == "killed"


def test_a_missing_stop_metric_is_named(tmp_path) -> None:
    ctx = TrialContext(study="x", data="synthetic", epochs=1, metric="score", mode="max")
    with pytest.raises(KeyError, match="no 'val_loss' .*stop_metric"):
        run_trial(lambda c, x, d: _ScoreTask([1.0]), {"seed": 0}, ctx, LocalSession(workdir=str(tmp_path), cpus=1))


def test_the_report_net_recipe_builds_what_it_names_and_learns(tmp_path, monkeypatch) -> None:
    """``optimizer=sgd`` is SGD with Nesterov momentum; label smoothing enters the training loss only;
    ``eval_flip`` predicts from the mean of the image's and its mirror's logits."""

    from raysweep.search_spaces import configs_of
    from raysweep.search_spaces.cnn import SPACES

    (fast,) = configs_of(SPACES["fast_report_net"])
    cfg = {**fast, "filters": 8, "layers": 3}
    task = CnnTask(cfg, _ctx(2), torch.device("cpu"))
    assert isinstance(task.opt, torch.optim.SGD)
    assert task.opt.defaults["nesterov"] and task.opt.defaults["momentum"] == 0.9
    assert task.opt.defaults["weight_decay"] == fast["weight_decay"] > 0
    (drop,) = [m for m in task.model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drop.p == fast["dropout"] != DROPOUT  # the recipe's, not the report's 0.5

    idx = task.val_idx[:16]
    loss, pred, _ = task._predict(task.images, task.labels, idx)
    xb, yb = task._batch(idx, task.images, task.labels)
    with torch.inference_mode():
        plain, mirrored = task.model(xb), task.model(xb.flip(3))
    mean = (plain + mirrored) / 2
    assert np.array_equal(pred, mean.argmax(1).numpy())
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(mean, yb).item(), rel=1e-6)
    assert loss != pytest.approx(torch.nn.functional.cross_entropy(plain, yb).item(), rel=1e-6)  # untrained: close

    import raysweep.trainables.cnn as cnn_trainable

    smoothing: list[tuple[bool, float]] = []  # (training: grad on, label_smoothing) per loss

    def recording(*args: Any, **kw: Any) -> torch.Tensor:
        smoothing.append((torch.is_grad_enabled(), kw.get("label_smoothing", 0.0)))
        return real(*args, **kw)

    real = cnn_trainable.F.cross_entropy
    monkeypatch.setattr(cnn_trainable.F, "cross_entropy", recording)
    last = run_trial(CnnTask, cfg, _ctx(2), LocalSession(workdir=str(tmp_path), cpus=1))
    assert {e for train, e in smoothing if train} == {fast["label_smoothing"]}  # every training step smooths
    assert {e for train, e in smoothing if not train} == {0.0}  # validation and test losses do not
    eps, k = fast["label_smoothing"], 10
    floor = -((1 - eps + eps / k) * math.log(1 - eps + eps / k) + (k - 1) * eps / k * math.log(eps / k))
    assert last["train_loss"] >= floor  # a smoothed target's entropy bounds its loss from below
    assert last["best_val_acc"] > 0.5  # it learns (chance 0.1)


def test_test_shift_averages_shifted_views_on_the_test_set_only(tmp_path, monkeypatch) -> None:
    """``test_shift=1``: test logits are the mean over the image moved 1 px up-left, not moved, and moved
    1 px down-right (zeros shifted in, as training's padding), each mirrored; validation is unshifted."""

    cfg = {**CFG, "eval_flip": 1, "test_shift": 1}
    task = CnnTask(cfg, _ctx(1), torch.device("cpu"))
    idx = task.val_idx[:16]
    loss, pred, _ = task._predict(task.images, task.labels, idx, shift=1)
    xb, yb = task._batch(idx, task.images, task.labels)
    down, up = torch.zeros_like(xb), torch.zeros_like(xb)
    down[:, :, 1:, 1:], up[:, :, :-1, :-1] = xb[:, :, :-1, :-1], xb[:, :, 1:, 1:]
    with torch.inference_mode():
        mean = torch.stack([task.model(v) for x in (xb, up, down) for v in (x, x.flip(3))]).mean(0)
    assert np.array_equal(pred, mean.argmax(1).numpy())
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(mean, yb).item(), rel=1e-5)

    shifts: list[int] = []
    predict = CnnTask._predict

    def recording(self: CnnTask, *args: Any, shift: int = 0) -> Any:
        shifts.append(shift)
        return predict(self, *args, shift=shift)

    monkeypatch.setattr(CnnTask, "_predict", recording)
    run_trial(CnnTask, cfg, _ctx(2), LocalSession(workdir=str(tmp_path), cpus=1))
    assert shifts == [0, 0, 1]  # two validation passes, then the test


def test_crop_pad_and_fill_set_the_training_crops_and_the_test_shift_views() -> None:
    """``crop_pad=2, crop_fill=reflect`` (airbench94's): every training image is a window of the image
    reflect-padded 2 px (or of its mirror), and test_shift's views reflect at the edge instead of zeros."""
    pad = torch.nn.functional.pad
    cfg = {**CFG, "crop_pad": 2, "crop_fill": "reflect", "eval_flip": 0, "test_shift": 1}
    task = CnnTask(cfg, _ctx(1), torch.device("cpu"))
    idx = np.sort(task.train_idx[:32])
    plain, _ = task._batch(idx)
    crops, _ = task._batch(idx, augment=True)
    windows = set()  # (image, dy, dx) of each crop in its image (or mirror) reflect-padded 2 px
    for b in range(len(idx)):
        for src in (plain[b : b + 1], plain[b : b + 1].flip(3)):
            padded = pad(src, (2,) * 4, mode="reflect")[0]
            windows |= {(b, dy, dx) for dy in range(5) for dx in range(5)
                        if torch.equal(padded[:, dy : dy + 32, dx : dx + 32], crops[b])}  # fmt: skip
    assert {b for b, *_ in windows} == set(range(len(idx)))  # each crop is a reflected 2-px window
    assert len({(dy, dx) for _, dy, dx in windows}) > 5  # and they move

    xb, yb = plain[:8], torch.as_tensor(task.labels[idx[:8]])
    with torch.inference_mode():
        task.model.eval()
        views = [xb] + [pad(xb, (1,) * 4, mode="reflect")[:, :, 1 - d : 33 - d, 1 - d : 33 - d] for d in (-1, 1)]
        mean = torch.stack([task.model(v) for v in views]).mean(0)
    loss, _, _ = task._predict(task.images, task.labels, idx[:8], shift=1)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(mean, yb.long()).item(), rel=1e-6)
