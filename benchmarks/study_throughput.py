"""Training throughput of each study's models: pixel models in images/s, the char-LSTM in characters/s.

Each model comes from the registry with its default configuration (``build_model(name)``) and is
timed over full training steps (forward, loss, backward, Adam step) on random inputs of the
study's shape:

- pixel models (``pixelcnn``, ``row_lstm``, ``diagonal_bilstm``): x float (B, 3, 32, 32) in [0, 1],
  multiples of 1/255; forward(x) -> logits (B, 256, 3, H, W); cross-entropy against (x * 255).long();
- ``char_lstm``: ids (B, T) long -> (logits (B, T, V), state); cross-entropy against the next ids.

A model that is not registered in this checkout is skipped with a note.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import BenchContext, Run, timed_calls

NAME = "study_throughput"
PIXEL_MODELS = ("pixelcnn", "row_lstm", "diagonal_bilstm")
FIGURES = {
    **{f"pixel_{m}_images_per_s": ("img/s", f"{m}, 32x32, training step (fwd+bwd+Adam)") for m in PIXEL_MODELS},
    "char_lstm_chars_per_s": ("char/s", "char-LSTM, training step (fwd+bwd+Adam), characters per second"),
}


def _step_fn(model: torch.nn.Module, inputs: torch.Tensor, loss_fn: Any, device: torch.device) -> Any:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        loss = loss_fn(model, inputs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def _pixel_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    logits = model(x)  # (B, 256, 3, H, W)
    return F.cross_entropy(logits, (x * 255).round().long())


def _char_loss(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    logits, _ = model(ids[:, :-1])  # (B, T, V)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def run(bc: BenchContext) -> Run:
    from raysweep.models import build_model, count_parameters, model_names
    from raysweep.training import pick_device

    torch.set_num_threads(bc.threads)
    device = pick_device(bc.device)
    seconds = bc.pick(0.0, 5.0, 5.0 if device.type == "cuda" else 15.0)  # a GPU runs thousands of steps in 5 s
    out = Run()
    names = model_names()
    batch = bc.pick(2, 16, 16)
    for name in PIXEL_MODELS:
        key = f"pixel_{name}_images_per_s"
        if name not in names:
            out.skipped[key] = f"model {name!r} is not registered in this checkout"
            continue
        torch.manual_seed(0)
        model = build_model(name).to(device).train()
        x = (torch.randint(0, 256, (batch, 3, 32, 32)).float() / 255).to(device)  # (B, 3, 32, 32)
        step = _step_fn(model, x, _pixel_loss, device)
        elapsed, n = timed_calls(step, seconds, warmup=1, min_calls=bc.pick(1, 3, 5))
        out.figures[key] = n * batch / elapsed
        out.details[name] = {"params": count_parameters(model), "batch": batch, "steps": n}
    key = "char_lstm_chars_per_s"
    if "char_lstm" not in names:
        out.skipped[key] = "model 'char_lstm' is not registered in this checkout"
    else:
        torch.manual_seed(0)
        model = build_model("char_lstm").to(device).train()
        b, t = bc.pick((4, 32), (64, 100), (64, 100))
        probe, _ = model(torch.zeros(1, 2, dtype=torch.long, device=device))
        vocab = probe.shape[-1]
        ids = torch.randint(0, vocab, (b, t + 1), device=device)  # (B, T + 1): inputs and next-char targets
        step = _step_fn(model, ids, _char_loss, device)
        elapsed, n = timed_calls(step, seconds, warmup=1, min_calls=bc.pick(1, 3, 5))
        out.figures[key] = n * b * t / elapsed
        out.details["char_lstm"] = {"params": count_parameters(model), "batch": b, "seq_len": t, "vocab": vocab}
    shapes = ", ".join(f"{k} {v['params']:,} params" for k, v in out.details.items())
    out.notes.append(f"registry defaults ({shapes or 'no model registered'}); pixel batch {batch}; "
                     f"{bc.threads} torch threads, {device.type}")  # fmt: skip
    return out
