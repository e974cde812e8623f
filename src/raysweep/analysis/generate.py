"""``raysweep generate``: continue a phrase with the best weights of a finished char-rnn trial run.

Why in analysis: it reads a run back from MLflow (tags, logged model, tokenizer), as the report
does; the trainable only writes those artifacts (``model/best.pt``, ``model/spec.json``,
``model/tokenizer.json``) and knows nothing of reading them.
"""

from __future__ import annotations

import json

import numpy as np
import torch
from mlflow.exceptions import MlflowException

from raysweep import tracking
from raysweep.analysis.errors import AnalysisError
from raysweep.analysis.runs import download, store_client
from raysweep.data.tokenizers import tokenizer_from_dict
from raysweep.models import build_model
from raysweep.models.char_lstm import SEED_TEXT, generate


def generate_from_run(run_id: str, tracking_uri: str | None = None, seed_text: str | None = None, length: int = 200,
                      temperature: float = 0.8, top_k: int | None = None, seed: int = 0) -> str:  # fmt: skip
    """Continue ``seed_text`` (default: the seed text the run was trained with, its ``option.seed_text``
    param, else ``SEED_TEXT``) with the best weights of char-rnn trial run ``run_id`` (on the CPU, so
    the same seed gives the same text everywhere). AnalysisError if the run is missing or is not a
    finished char-rnn trial."""
    uri = tracking.resolve_tracking_uri(tracking_uri)
    try:
        run = store_client(uri).get_run(run_id)
    except MlflowException:
        raise AnalysisError(f"no run {run_id!r} at {uri}; a trial's run id is in the MLflow UI or the sweep summary "
                            "('best run')") from None  # fmt: skip
    study = run.data.tags.get("raysweep.study", "")
    if study != "char_rnn" or run.data.tags.get(tracking.KIND_TAG) != "trial":
        what = f"a {study!r} {run.data.tags.get(tracking.KIND_TAG, 'run')}" if study else "not a raysweep trial"
        raise AnalysisError(f"run {run_id} is {what}, not a char_rnn trial; pass the run id of a char_rnn trial")
    files = {name: download(uri, run_id, f"model/{name}") for name in ("best.pt", "spec.json", "tokenizer.json")}
    missing = [f"model/{n}" for n, p in files.items() if p is None]
    if missing:
        raise AnalysisError(f"run {run_id} has no {', '.join(missing)} (status {run.info.status}): only a trial that "
                            "reached its last epoch logs its model")  # fmt: skip
    if seed_text is None:
        seed_text = run.data.params.get("option.seed_text") or SEED_TEXT
    spec = json.loads(files["spec.json"].read_text())
    tokenizer = tokenizer_from_dict(json.loads(files["tokenizer.json"].read_text()))
    model = build_model(spec["name"], **spec["config"])
    model.load_state_dict(torch.load(files["best.pt"], map_location="cpu"))
    if not np.any(tokenizer.encode(seed_text) != tokenizer.unk_id):
        raise AnalysisError(f"--seed-text {seed_text!r} holds no token this run's tokenizer knows")
    return generate(model, tokenizer, seed_text, length=length, temperature=temperature, top_k=top_k, seed=seed,
                    device="cpu")  # fmt: skip
