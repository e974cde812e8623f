"""The char-rnn study's trainable: a character-level LSTM language model on tiny-shakespeare.

Every trial trains on fixed-length windows of ``seq_len`` tokens, each from a zero state, so the
gradient is truncated at ``seq_len`` steps and both splits train the same way: random and temporal
differ only in where the windows come from (``make_splits``). AdamW, linear warm-up then cosine
decay of the learning rate per step, gradient clipping; the loop stops early on validation loss.

Metrics (losses in nats per token; for the char tokenizer a token is a character):
``train_{loss,ppl,acc}`` measured on the epoch's own training batches while they train (dropout
on, weights moving: cheap, and slightly pessimistic), ``val_{loss,ppl,bpc,acc}`` each epoch,
``test_*`` at the end from the best weights, and ``leak_ngram32``: the share of validation windows
that contain a 32-token passage also inside a training window (high for the random split, about
0 for the temporal one, whose validation accuracy therefore falls below its training accuracy).
``bpc`` is bits per character of the predicted text, comparable across tokenizers.

Artifacts: ``generated.txt`` (the seed phrase continued by the best weights), ``samples/
epoch_XXX.txt`` during training, ``model/tokenizer.json`` beside the loop's ``model/best.pt`` and
``model/spec.json``, which ``raysweep generate --run RUN_ID`` reads (``analysis.generate``).

Runtime options (``--option``; they change what is logged, not what is measured): ``seed_text``
("To be or not to"), ``sample_length`` (200 tokens), ``temperature`` (0.8), ``top_k`` (0: all),
``sample_every`` (1: a sample every epoch; 0: none), ``split_seed`` (0: the random split's
shuffle, the same for every trial so that trials share one validation set).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from raysweep.data.shakespeare import load_cached_text
from raysweep.data.tokenizers import build_tokenizer
from raysweep.data.windows import Windows, batches, make_splits, ngram_leak
from raysweep.metrics import bits_per_char, perplexity
from raysweep.models import build_model
from raysweep.models.char_lstm import SEED_TEXT, evaluate, generate
from raysweep.search_spaces.char_rnn import LEAK_N
from raysweep.tracking import RunLogger
from raysweep.training import TrialContext, autocast, run_trial

WARMUP = 0.05  # share of all steps with a linearly rising learning rate
FINAL_LR = 0.1  # the cosine decay ends at this share of the peak learning rate
EVAL_BATCH = 256  # windows per evaluation batch


def train_char_rnn(config: dict[str, Any], ctx: TrialContext) -> None:
    """Ray Tune entry point (bound to ``ctx`` with ``tune.with_parameters``)."""
    run_trial(CharRnnTask, config, ctx)


class CharRnnTask:
    def __init__(self, config: dict[str, Any], ctx: TrialContext, device: torch.device) -> None:
        self.config, self.ctx, self.device = config, ctx, device
        texts, _ = load_cached_text(ctx.data)
        self.tokenizer = build_tokenizer(str(config.get("tokenizer", "char")), texts.train)  # train text only
        self.seq_len = int(config["seq_len"])
        data = make_splits(*texts.encode(self.tokenizer), split=str(config["split"]), seq_len=self.seq_len,
                           seed=int(ctx.options.get("split_seed", 0)))  # fmt: skip
        self.leak = ngram_leak(data.train, data.validation, n=LEAK_N)
        data = data.to(device)  # the whole text is a few MB of ids: keep it where the compute is
        self.train, self.val, self.test = data.train, data.validation, data.test
        # characters each token id stands for: bits per character for either tokenizer
        token_chars = np.array([len(self.tokenizer.decode([i])) for i in range(self.tokenizer.vocab_size)])
        self.chars_per_token = {name: _chars_per_token(w, token_chars) for name, w in (("val", self.val),
                                                                                      ("test", self.test))}  # fmt: skip
        self.model = build_model("char_lstm", **self._model_config()).to(device)
        self.batch_size = int(config["batch_size"])
        per_epoch = int(config.get("epoch_tokens", 0))
        wanted = len(self.train) if per_epoch <= 0 else max(1, math.ceil(per_epoch / self.seq_len))
        self.windows_per_epoch = min(wanted, len(self.train))  # an epoch is at most one pass
        self.steps_per_epoch = math.ceil(self.windows_per_epoch / self.batch_size)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=float(config["lr"]),
                                     weight_decay=float(config.get("weight_decay", 0.01)))  # fmt: skip
        total = max(1, ctx.epochs * self.steps_per_epoch)
        warm = max(1, round(WARMUP * total))

        def schedule(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            done = min(1.0, (step - warm) / max(1, total - warm))
            return FINAL_LR + (1 - FINAL_LR) * 0.5 * (1 + math.cos(math.pi * done))

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, schedule)

    def _model_config(self) -> dict[str, Any]:
        c = self.config
        return {"vocab_size": self.tokenizer.vocab_size, "embed_dim": int(c["embed_dim"]),
                "hidden_size": int(c["hidden_size"]), "num_layers": int(c["num_layers"]),
                "dropout": float(c["dropout"])}  # fmt: skip

    def train_epoch(self, epoch: int) -> dict[str, float]:
        self.model.train()
        clip = float(self.config.get("grad_clip", 1.0))
        order_seed = int(self.config.get("seed", 0)) * 100_003 + epoch  # resumable: no RNG state needed
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        for step, (x, y) in enumerate(batches(self.train, self.batch_size, seed=order_seed)):  # (B, T) each
            if step == self.steps_per_epoch:
                break
            with autocast(self.device, self.ctx.amp):
                logits, _ = self.model(x)  # (B, T, V), every window from a zero state
            logits = logits.float()
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.opt.step()
            self.sched.step()
            loss_sum += loss.detach() * y.numel()
            correct += (logits.detach().argmax(-1) == y).sum()
            seen += y.numel()
            if step % 100 == 99 and not math.isfinite(loss.item()):
                break  # diverged: the loop marks the trial
        loss = loss_sum.item() / seen
        return {"train_loss": loss, "train_ppl": perplexity(loss), "train_acc": correct.item() / seen,
                "lr": self.sched.get_last_lr()[0]}  # fmt: skip

    def _measure(self, windows: Windows, prefix: str) -> dict[str, float]:
        """Loss, perplexity, bits per character and next-token accuracy over all ``windows``."""
        with autocast(self.device, self.ctx.amp):
            m = evaluate(self.model, batches(windows, EVAL_BATCH, shuffle=False), char_level=False)
        bpc = bits_per_char(m["loss"], self.chars_per_token[prefix])
        return {f"{prefix}_loss": m["loss"], f"{prefix}_ppl": m["perplexity"], f"{prefix}_bpc": bpc,
                f"{prefix}_acc": m["accuracy"]}  # fmt: skip

    def evaluate(self) -> dict[str, float]:
        return {**self._measure(self.val, "val"), "leak_ngram32": self.leak}

    def on_epoch_end(self, epoch: int, logger: RunLogger) -> None:
        """A sample of the current weights every ``sample_every`` epochs: ``samples/epoch_XXX.txt``."""
        every = int(self.ctx.options.get("sample_every", 1))
        if logger and every > 0 and epoch % every == 0:
            logger.log_text(self.sample(), f"samples/epoch_{epoch:03d}.txt")

    def sample(self) -> str:
        """The seed phrase continued (``--option``: seed_text, sample_length, temperature, top_k)."""
        o = self.ctx.options
        top_k = int(o.get("top_k", 0))
        return generate(self.model, self.tokenizer, str(o.get("seed_text", SEED_TEXT)),
                        length=int(o.get("sample_length", 200)), temperature=float(o.get("temperature", 0.8)),
                        top_k=top_k or None, seed=int(self.config.get("seed", 0)))  # fmt: skip

    def finish(self, logger: RunLogger) -> dict[str, float]:
        """Test metrics, the generated text and the tokenizer (best weights loaded by the loop)."""
        out = self._measure(self.test, "test")
        text = self.sample()
        logger.log_text(text, "generated.txt")
        logger.log_dict(self.tokenizer.to_dict(), "model/tokenizer.json")
        o = self.ctx.options
        logger.log_dict({"seed_text": str(o.get("seed_text", SEED_TEXT)), "length": int(o.get("sample_length", 200)),
                         "temperature": float(o.get("temperature", 0.8)), "top_k": int(o.get("top_k", 0)),
                         "seed": int(self.config.get("seed", 0)), "text": text}, "generated.json")  # fmt: skip
        return out

    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                 "rng": torch.get_rng_state()}  # fmt: skip
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["rng"])  # dropout masks continue as if never interrupted
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)

    def model_spec(self) -> dict[str, Any]:
        return {"name": "char_lstm", "config": self._model_config()}


def _chars_per_token(windows: Windows, token_chars: np.ndarray) -> float:
    """Mean characters per predicted token over all ``windows`` (1 for the char tokenizer)."""
    offsets = torch.arange(1, windows.seq_len + 1)
    targets = windows.tokens.cpu()[windows.starts.cpu()[:, None] + offsets]  # (W, T)
    return float(token_chars[targets.numpy()].mean())
