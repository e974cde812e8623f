"""Character-level LSTM language model for tiny-shakespeare (study ``char_rnn``), and its sampler.

Architecture, for vocabulary V, ``embed_dim`` E, ``hidden_size`` H, ``num_layers`` L, ``dropout`` p:

- embedding: ``nn.Embedding(V, E)``, trained from scratch (no pretrained vectors);
- ``nn.LSTM(E, H, L, batch_first=True, dropout=p)``: dropout p on the outputs of every LSTM layer
  but the last (PyTorch's inter-layer dropout; none when L = 1); cuDNN on GPU;
- dropout p on the last layer's outputs, then ``nn.Linear(H, V)`` to next-token logits (softmax
  in the loss).

Defaults (V=65, E=64, H=256, L=2) give 876,929 parameters. ``forward(x, state)`` returns the LSTM
state so that the sampler can feed one token at a time. Autocast-safe: a carried state is cast to
the embedding's dtype (autocast then casts it like the input), and metrics take the loss from
float32 logits.

Also here: ``lm_metrics`` / ``evaluate`` (loss, perplexity, bits per character, accuracy) and
``generate`` (temperature / top-k sampling, deterministic given a seed, for either tokenizer).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from raysweep.metrics import bits_per_char, perplexity
from raysweep.models import register

if TYPE_CHECKING:
    from raysweep.data.tokenizers import Tokenizer

MAX_LAYERS = 3
SEED_TEXT = "To be or not to"  # the phrase samples continue unless told otherwise
LSTMState = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (L, B, H)


@register("char_lstm")
class CharLSTM(nn.Module):
    """Embedding -> stacked LSTM -> dropout -> linear head over the vocabulary."""

    def __init__(
        self,
        vocab_size: int = 65,  # token ids 0..V-1 (tokenizer.vocab_size: 66 with the unknown id)
        embed_dim: int = 64,  # size of the learned token embedding
        hidden_size: int = 256,  # LSTM units per layer (also the size of h and c)
        num_layers: int = 2,  # stacked LSTM layers, 1..MAX_LAYERS
        dropout: float = 0.2,  # drop probability between LSTM layers and before the head
    ) -> None:
        super().__init__()
        if int(vocab_size) < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        if not 1 <= int(num_layers) <= MAX_LAYERS:
            raise ValueError(f"num_layers must be in 1..{MAX_LAYERS}, got {num_layers}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if int(embed_dim) < 1 or int(hidden_size) < 1:
            raise ValueError(
                f"embed_dim and hidden_size must be >= 1, got {embed_dim}, {hidden_size}"
            )
        self.vocab_size = int(vocab_size)
        self.embed = nn.Embedding(self.vocab_size, int(embed_dim))
        self.lstm = nn.LSTM(
            int(embed_dim),
            int(hidden_size),
            int(num_layers),
            batch_first=True,
            dropout=float(dropout) if int(num_layers) > 1 else 0.0,  # 1 layer: PyTorch warns
        )
        self.drop = nn.Dropout(float(dropout))
        self.head = nn.Linear(int(hidden_size), self.vocab_size)

    def example_input(self, batch: int = 2, steps: int = 16) -> torch.Tensor:
        """A valid input for the registry-wide test: random token ids (B, T)."""
        return torch.randint(0, self.head.out_features, (batch, steps))

    def forward(
        self, x: torch.Tensor, state: LSTMState | None = None
    ) -> tuple[torch.Tensor, LSTMState]:
        """(B, T) int64 ids [+ state from the previous chunk] -> (B, T, V) logits, new state."""
        emb = self.embed(x)  # (B, T, E)
        if state is not None:
            state = (state[0].to(emb.dtype), state[1].to(emb.dtype))
        out, new_state = self.lstm(emb, state)  # (B, T, H); h, c: (L, B, H)
        return self.head(self.drop(out)), new_state  # (B, T, V)


# ----------------------------------------------------------------------------------------- metrics


def lm_metrics(mean_loss: float, *, char_level: bool = True) -> dict[str, float]:
    """From the mean cross-entropy in nats per token: loss, perplexity and, for characters,
    bits per character (loss / ln 2), the unit char-level results are published in."""
    loss = float(mean_loss)
    out = {"loss": loss, "perplexity": perplexity(loss)}
    if char_level:
        out["bpc"] = bits_per_char(loss)
    return out


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    char_level: bool = True,
) -> dict[str, float]:
    """Mean loss over all target tokens of ``batches`` -> ``lm_metrics`` plus ``accuracy``.

    Each batch starts from a zero state (independent windows). Batches are moved to the model's
    device; the model's train/eval mode is restored afterwards.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            logits, _ = model(x)
            logits = logits.float()  # (B, T, V)
            total_loss += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            ).item()
            correct += int((logits.argmax(dim=-1) == y).sum().item())
            count += y.numel()
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate() got no batches")
    return {**lm_metrics(total_loss / count, char_level=char_level), "accuracy": correct / count}


# -------------------------------------------------------------------------------------- generation

_WORD_END = re.compile(r"\w(?=\W)")  # the last character of a complete word


@torch.no_grad()
def generate(
    model: nn.Module,
    tokenizer: Tokenizer,
    seed_text: str = SEED_TEXT,
    length: int = 200,
    temperature: float = 0.8,
    top_k: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    *,
    min_words: int = 10,
    max_length: int = 2000,
) -> str:
    """``seed_text`` followed by sampled text: at least ``length`` tokens, and more until the
    continuation holds ``min_words`` complete words (a run of word characters followed by a
    non-word one), but never more than ``max_length`` tokens.

    Sampling: softmax(logits / temperature), restricted to the ``top_k`` most likely tokens if
    given; ``temperature=0`` is greedy. The unknown id is never sampled. Deterministic for a given
    ``seed`` (a private CPU ``torch.Generator``; the global RNG is untouched). The model is put in
    eval mode for the call and restored afterwards.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    vocab = tokenizer.vocab_size
    model_vocab = getattr(model, "vocab_size", vocab)
    if model_vocab < vocab:
        raise ValueError(f"model has {model_vocab} outputs, tokenizer {vocab} ids")
    prompt = torch.as_tensor(tokenizer.encode(seed_text), dtype=torch.int64)
    if prompt.numel() == 0:
        raise ValueError("seed_text must hold at least one token")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    gen = torch.Generator().manual_seed(int(seed))
    # ids the sampler may not pick: the unknown id and any model outputs beyond the tokenizer
    banned = torch.zeros(model_vocab, dtype=torch.bool)
    banned[tokenizer.unk_id] = True
    banned[vocab:] = True

    was_training = model.training
    model.eval()
    try:
        logits, state = model(prompt.to(device)[None], None)  # (1, T, V)
        out_ids: list[int] = []
        text = ""
        words = 0
        while len(out_ids) < max_length:
            step = logits[0, -1].float().cpu().masked_fill(banned, -math.inf)  # (V,)
            next_id = _sample(step, temperature, top_k, gen)
            out_ids.append(next_id)
            piece = tokenizer.decode([next_id])
            words += len(_WORD_END.findall(text[-1:] + piece))  # words completed by this piece
            text += piece
            if len(out_ids) >= length and words >= min_words:
                break
            logits, state = model(torch.tensor([[next_id]], device=device), state)
    finally:
        model.train(was_training)
    return seed_text + text


def _sample(
    logits: torch.Tensor, temperature: float, top_k: int | None, gen: torch.Generator
) -> int:
    """One id from (V,) float32 CPU logits."""
    if temperature == 0:
        return int(logits.argmax().item())
    scaled = logits / temperature
    if top_k is not None and top_k < scaled.numel():
        kth = torch.topk(scaled, top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, -math.inf)
    probs = torch.softmax(scaled, dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen).item())
