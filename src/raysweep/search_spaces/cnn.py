"""Search spaces of the CNN study (the report's §2)."""

from dataclasses import dataclass, replace
from typing import Any

from raysweep.search_spaces import Dim, Hyper, Space, SpaceError, loguniform
from raysweep.study import Study

# The model's limits (raysweep.models.cnn.MAX_LAYERS / MAX_FILTERS / MAX_STAGES), restated so that
# checking a sweep never imports torch; tests/test_sweep.py checks that they agree.
MAX_LAYERS = 11
MAX_FILTERS = 256
MAX_STAGES = 4


def parse_widths(value: Any) -> tuple[int, ...]:
    """``widths`` as channels per stage: "64-256-256" -> (64, 256, 256); "" -> () (the report's net).
    An int is one stage (MLflow params come back typed: "64" -> 64)."""
    parts = str(value).strip().split("-") if str(value).strip() else []
    try:
        widths = tuple(int(p) for p in parts)
    except ValueError:
        widths = (0,)
    if len(widths) > MAX_STAGES or not all(1 <= w <= MAX_FILTERS for w in widths):
        raise SpaceError(f"widths={value!r}: write the channels of 1 to {MAX_STAGES} stages joined by '-', each "
                         f"1..{MAX_FILTERS} (e.g. 64-256-256), or '' for the report's net")  # fmt: skip
    return widths


def check_net(config: dict[str, Any]) -> tuple[int, ...]:
    """The configuration's ``widths`` (() for the report's net); SpaceError if it names no net."""
    widths = parse_widths(config.get("widths", ""))
    if not widths and (config.get("filters") is None or config.get("layers") is None):
        raise SpaceError("a cnn configuration needs filters and layers (the report's net) or widths "
                         "(airbench94's conv groups); set them in the space or with --set")  # fmt: skip
    return widths


@dataclass(frozen=True)
class _Widths(Hyper):
    """``widths`` is text with a format of its own: checked by ``parse_widths``."""

    def check(self, value: Any) -> None:
        super().check(value)
        parse_widths(value)


HYPERS = {
    h.name: h
    for h in (
        Hyper("lr", float, "peak learning rate of the one-cycle schedule (per step)", low=0.0, low_open=True,
              high=10.0, required=True),  # fmt: skip
        Hyper("optimizer", str, "adam (the report's) or sgd (Nesterov momentum 0.9)", choices=("adam", "sgd")),
        Hyper("label_smoothing", float, "share of the target spread over all classes (training loss only)",
              low=0.0, high=0.99),  # fmt: skip
        Hyper("eval_flip", int, "predictions average the image and its mirror: 1, off: 0", choices=(0, 1)),
        Hyper("test_shift", int, "test predictions also average the image shifted this many px up-left and "
              "down-right (mirrored too with eval_flip); 0: off. Validation is never shifted", low=0, high=4),
        Hyper("batch_size", int, "images per optimizer step", low=1, high=4096, required=True),
        Hyper("filters", int, "channels of conv_0 (doubles every two convs); needed unless widths is set, "
              "which ignores it", low=1, high=MAX_FILTERS),
        Hyper("layers", int, "number of 3x3 conv blocks (at most 9 with whiten); needed unless widths is set, "
              "which ignores it", low=1, high=MAX_LAYERS),
        _Widths("widths", str, "channels of each stage of airbench94's conv groups (conv3x3, 2x2 max-pool, BN, "
                "act, conv3x3, BN, act; BN weights frozen at 1), joined by '-' (64-256-256), then a global "
                "max-pool and a bias-free linear with logits x 1/9; replaces filters/layers. '' (default): the "
                "report's net, pooling after every second conv"),
        Hyper("activation", str, "after every BatchNorm and the whitening conv: relu (default) or gelu",
              choices=("relu", "gelu")),  # fmt: skip
        Hyper("whiten", int, "first layer a frozen 2x2 conv (32x32 -> 31x31 maps): the 12 whitening directions "
              "of 2x2x3 patches of 5,000 training images and their negatives, bias trained: 1; off: 0",
              choices=(0, 1)),  # fmt: skip
        Hyper("bn_bias_scale", float, "learning-rate multiplier of the BatchNorm biases (their weight decay is "
              "divided by it: the same decay per step); 1: off", low=0.0, low_open=True, high=1024.0),
        Hyper("ema", float, "Lookahead of the weights (airbench94's): every 5 steps they move to their running "
              "average, with decay ema**5 x (step / steps)**3, which is copied back into the net (and at each "
              "epoch's end: validation and test see the average); 0: off", low=0.0, high=0.999),
        Hyper("flip", str, "training flips: random (p = 0.5 per image and epoch) or alternating (each image "
              "flipped at random in epoch 0, then in exactly every other epoch)", choices=("random", "alternating")),
        Hyper("weight_decay", float, "L2 weight decay (per unit of lr)", low=0.0, high=1.0),
        Hyper("grad_clip", float, "max global gradient norm", low=0.0, low_open=True),
        Hyper("dropout", float, "share of the pooled features zeroed before the classifier (the report: 0.5)",
              low=0.0, high=0.99),  # fmt: skip
        Hyper("augment", int, "random crop (crop_pad px) + flip on: 1, off: 0", choices=(0, 1)),
        Hyper("crop_pad", int, "training crops are 32x32 windows of the image padded this many px (a shift of "
              "up to crop_pad px each way; airbench94: 2); default 4", low=0, high=8),
        Hyper("crop_fill", str, "what the padding holds, in training crops and test_shift's views: zero (the "
              "mean colour; default) or reflect (the image mirrored at its edge; airbench94's)",
              choices=("zero", "reflect")),  # fmt: skip
        Hyper("seed", int, "seed of init, split order and augmentation", low=0),
    )
}

_FIXED = (
    Dim("weight_decay", (0.0,), "fixed"),
    Dim("grad_clip", (1.0,), "fixed"),
    Dim("augment", (1,), "fixed"),
    Dim("seed", (0,), "nuisance"),
)
# The report-net recipe (space "fast_report_net"; "quick" is it on smaller nets): SGD with Nesterov
# momentum under the one-cycle schedule, label smoothing, weight decay, mirror-averaged predictions, no
# dropout (these nets underfit a short schedule: train accuracy ~ validation accuracy; dropout 0 scored
# 0.2-1 pt higher at 8 epochs); batch 128 keeps a CPU busy at a small step cost. bf16 autocast comes from
# --amp auto where it is faster.
_RECIPE = (
    Dim("optimizer", ("sgd",), "fixed"),
    Dim("lr", (0.1,), "fixed"),
    Dim("batch_size", (128,), "fixed"),
    Dim("weight_decay", (5e-4,), "fixed"),
    Dim("label_smoothing", (0.1,), "fixed"),
    Dim("eval_flip", (1,), "fixed"),
    Dim("dropout", (0.0,), "fixed"),
    Dim("grad_clip", (5.0,), "fixed"),
    Dim("augment", (1,), "fixed"),
    Dim("seed", (0,), "nuisance"),
)


def _with(dims: tuple[Dim, ...], **values: Any) -> tuple[Dim, ...]:
    """``dims`` with some fixed values replaced: a recipe's variant restates only what differs."""
    return tuple(replace(d, values=(values[d.name],)) if d.name in values else d for d in dims)


# airbench94's recipe (space "airbench") in this codebase's conventions. airbench: SGD (Nesterov, momentum
# 0.85) on a per-example sum loss, lr 11.5 and weight decay 0.0153 per 1,024 examples decoupled from momentum
# (divided by 1024 x (1 + 1 / (1 - momentum))). Here: torch SGD on the mean loss, Nesterov momentum 0.9 that
# one-cycle swings over 0.85-0.95, so a peak lr of 11.5 x 256 / (1024 x (1 + 1/(1 - m))) = 0.26-0.38 at batch
# 256 (0.3), and weight decay per unit of lr 0.0153 / 11.5 = 1.33e-3 (the same decay per step). Batch 256:
# on the 2-core AMD EPYC, batch 256 trained 178 img/s against 168 at 512 and 146 at 1024 (and 99/96/87 in a
# busier round). grad_clip 5 is a guard, ~10x the first steps' norms (airbench clips nothing). crop_pad 2 +
# crop_fill reflect are its 2-px reflected translations (until 2026-12-08 4-px zero-padded crops: at 32/128/128,
# 6 epochs, 2 seeds, test accuracy 0.8654 against 0.8561); eval_flip + test_shift 1 are its TTA level 2's six
# views (weighted 1/3 each, not 1/2 unshifted and 1/4 per shift). The rest is _RECIPE's.
_TTA = [d.name for d in _RECIPE].index("eval_flip") + 1  # test_shift joins the recipe after eval_flip
_AIRBENCH = (
    (
        Dim("widths", ("64-256-256",), "fixed"),
        Dim("activation", ("gelu",), "fixed"),
        Dim("whiten", (1,), "fixed"),
        Dim("bn_bias_scale", (64.0,), "fixed"),
        Dim("ema", (0.95,), "fixed"),
        Dim("flip", ("alternating",), "fixed"),
    )
    + _with(_RECIPE[:_TTA], lr=0.3, batch_size=256, weight_decay=1.33e-3, label_smoothing=0.2)
    + (Dim("test_shift", (1,), "fixed"),)
    + _RECIPE[_TTA:]
    + (Dim("crop_pad", (2,), "fixed"), Dim("crop_fill", ("reflect",), "fixed"))
)
_BASELINE = {"lr": 0.001, "batch_size": 64, "filters": 32, "layers": 5}
_REPORT = (
    Dim("lr", (0.001, 0.01, 0.1)),
    Dim("batch_size", (16, 32, 64)),
    Dim("filters", (16, 32, 64)),
    Dim("layers", (3, 5, 7)),
)

SPACES = {
    s.name: s
    for s in (
        Space(
            "report_ablation",
            "the report's staged one-factor-at-a-time ablation (Table 2)",
            _REPORT + _FIXED,
            epochs=20,
            stages=("lr", "batch_size", "filters", "layers"),
            baseline=_BASELINE,
        ),
        Space("report_grid", "the report's full 3x3x3x3 grid", _REPORT + _FIXED, epochs=20),
        Space(
            "quick",
            "two small CNNs with fast_report_net's recipe: minutes on a 2-core CPU",
            (Dim("filters", (8, 16)), Dim("layers", (5,), "fixed")) + _RECIPE,
            epochs=4,
        ),
        Space(
            "fast",
            "the best test accuracy in minutes of a CPU: airbench94's recipe and net, conv groups 64/256/256 "
            "(benchmarks/time_to_accuracy.py)",
            # On a 2-core AMD EPYC with avx512_bf16 (bf16 from --amp auto), batch 256: 457 img/s, 100-116 s an
            # epoch; 30 minutes (17 epochs) 0.907-0.911 test accuracy, 10 minutes (5) 0.878-0.883 (with 4-px zero
            # crops 0.903-0.904 and 0.860-0.873). There 32/128/128 (this space until 2026-12-08) trains 1,190
            # img/s: 10 minutes (13-14 epochs, 4-px zero crops) 0.880-0.887.
            _AIRBENCH,
            epochs=10,
        ),
        Space(
            "fast_report_net",
            "the fast space until airbench94's recipe: the report's CNN family at 32x8, SGD+Nesterov, label "
            "smoothing, mirror-averaged predictions, shift-averaged test predictions, no dropout",
            # 32x8, not 32x7: conv_7 (256 channels at 4x4) doubles the parameters (1.18M) for ~10 % more
            # time per epoch; in a 10-minute budget it scored 0.870 (12 epochs) against 0.862 (13 epochs).
            # test_shift=1 added 0.2 pt to that model's test accuracy (0.872 against mirror-only 0.870).
            (Dim("filters", (32,), "fixed"), Dim("layers", (8,), "fixed"), Dim("test_shift", (1,), "fixed"))
            + _RECIPE,
            epochs=30,
        ),
        Space(
            "airbench",
            "airbench94's recipe on a CPU: whitened 2x2 patches, conv groups 64/256/256 with pooling inside, GELU, "
            "BatchNorm biases at 64x the lr, label smoothing 0.2, SGD+Nesterov, Lookahead, alternating flips, "
            "mirror- and shift-averaged test predictions",
            _AIRBENCH,
            epochs=10,
        ),
        Space(
            "tune_lr",
            "learning rate and weight decay, for random/qmc/optuna search on the baseline CNN",
            (
                Dim("lr", dist=loguniform(1e-4, 3e-2)),
                Dim("batch_size", (64,), "fixed"),
                Dim("filters", (32,), "fixed"),
                Dim("layers", (5,), "fixed"),
                Dim("weight_decay", (0.0, 1e-4, 5e-4), "nuisance"),
                Dim("grad_clip", (1.0,), "fixed"),
                Dim("augment", (1,), "fixed"),
                Dim("seed", (0,), "nuisance"),
            ),
            epochs=10,
        ),
    )
}

STUDY = Study(
    "cnn",
    "configurable CNN on CIFAR-10 (lr, batch size, filters, depth)",
    trainable_path="raysweep.trainables.cnn:train_cnn",
    spaces_module=__name__,
    data_path="raysweep.data.cifar10:prepare",
    metric="val_acc",
    mode="max",
    task_path="raysweep.trainables.cnn:CnnTask",
    analysis_module="raysweep.analysis.cnn",
    check_path="raysweep.data.cifar10:check_configs",
    result_options=("val_fraction", "split_seed"),  # the other --option names only change what is logged, or how fast
)
