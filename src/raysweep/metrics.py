"""The likelihood units the studies report, defined once: from a mean loss in nats.

Why here: the trainables, the models' evaluation helpers and the tests must agree on what
"perplexity", "bits per character" and "bits per dim" mean, so each is computed in one place.
Plain arithmetic: works on floats (and on tensors, since it only divides), needs no torch.
"""

from __future__ import annotations

import math

LN2 = math.log(2.0)
MAX_EXP = 700.0  # math.exp overflows a float a little above 709


def perplexity(nats: float) -> float:
    """exp(mean nats per token); ``inf`` for a diverged loss instead of an OverflowError."""
    return math.exp(nats) if nats < MAX_EXP else math.inf


def bits_per_char(nats: float, chars_per_token: float = 1.0) -> float:
    """Mean nats per token -> bits per character of the predicted text (the unit char-level results
    are published in); ``chars_per_token`` > 1 for word tokens, so tokenizers compare."""
    return nats / chars_per_token / LN2


def bits_per_dim(nats: float) -> float:
    """Mean nats per sub-pixel -> bits per dimension (8 = uniform guessing over 256 levels)."""
    return nats / LN2
