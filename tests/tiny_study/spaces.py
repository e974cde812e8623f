"""The tiny study's hyperparameters, its space, and its ``STUDY`` (plain data, no torch).

Installed, the package's ``raysweep.studies`` entry point names this module, and raysweep registers
``STUDY`` from it; in place (tests/ on ``sys.path``) a test calls ``register_study(STUDY)``.
"""

from raysweep.search_spaces import Dim, Hyper, Space
from raysweep.study import Study

HYPERS = {h.name: h for h in (
    Hyper("hidden", int, "hidden units", low=1, high=256),
    Hyper("lr", float, "SGD learning rate (per step)", low=0.0, low_open=True),
    Hyper("seed", int, "seed of init and batch order", low=0),
)}  # fmt: skip
SPACES = {"quick": Space("quick", "two widths", (Dim("hidden", (4, 8)), Dim("lr", (0.1,), "fixed"),
                                                 Dim("seed", (0,), "nuisance")), epochs=2)}  # fmt: skip

STUDY = Study(
    "tiny", "an MLP on two Gaussian blobs (a study defined outside the package)",
    trainable_path="tiny_study.trainable:train_tiny", spaces_module=__name__,
    data_path="tiny_study.trainable:data", metric="val_acc", mode="max",
    task_path="tiny_study.trainable:TinyTask", analysis_module="tiny_study.report", model_modules=("tiny_study.model",),
)  # fmt: skip
