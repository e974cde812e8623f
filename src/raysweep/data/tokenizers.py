"""Tokenizers for the language-model study: characters or words, fitted on the training text only.

Why a module of their own: a trial builds one from the training text, saves it beside the model
(``to_dict``), and ``raysweep generate`` rebuilds it from the run (``tokenizer_from_dict``); neither
needs the text source or the windows.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import numpy as np
import torch


class Tokenizer(Protocol):
    """What the model side needs: ids in [0, vocab_size), the last id meaning 'unknown'."""

    kind: str

    @property
    def vocab_size(self) -> int: ...

    @property
    def unk_id(self) -> int: ...

    def encode(self, text: str) -> np.ndarray: ...

    def decode(self, ids: Iterable[int] | np.ndarray | torch.Tensor) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


UNK_CHAR = "\ufffd"  # what the char tokenizer decodes the unknown id to
UNK_WORD = "<unk>"  # what the word tokenizer decodes the unknown id to


class _Vocabulary:
    """A list of tokens, id = position, plus a last id for anything not in it (``unk_id``).

    What the char and word tokenizers share: ids, decoding and the JSON form saved beside a
    checkpoint (``{"kind": ..., <field>: [...]}``, the field named as in runs logged so far).
    """

    kind: str
    field: str  # the key of the token list in to_dict()
    unk: str  # what the unknown id decodes to

    def __init__(self, items: Sequence[str]) -> None:
        self._items = list(items)
        self._index = {t: i for i, t in enumerate(self._items)}

    @property
    def vocab_size(self) -> int:
        return len(self._items) + 1

    @property
    def unk_id(self) -> int:
        return len(self._items)

    def decode(self, ids: Iterable[int] | np.ndarray | torch.Tensor) -> str:
        """Text of ``ids``; the unknown id becomes ``unk``."""
        table = self._items + [self.unk]
        return "".join(table[i] for i in _checked_ids(ids, self.vocab_size))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable; save it beside a checkpoint."""
        return {"kind": self.kind, self.field: list(self._items)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        if d.get("kind") != cls.kind:
            raise ValueError(f"not a {cls.kind} tokenizer: kind={d.get('kind')!r}")
        return cls(d[cls.field])


class CharTokenizer(_Vocabulary):
    """One id per character of the training text (sorted), plus a last id for unseen characters.

    tiny-shakespeare's training part has 65 distinct characters: ids 0..64, unknown = 65,
    ``vocab_size`` = 66. The unknown id never occurs in its validation or test parts; it decodes
    to U+FFFD.
    """

    kind, field, unk = "char", "chars", UNK_CHAR

    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("chars must be distinct single characters")
        super().__init__(chars)

    @property
    def chars(self) -> list[str]:
        return self._items

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """Vocabulary = the distinct characters of ``text`` (pass the training text only)."""
        return cls(sorted(set(text)))

    def encode(self, text: str) -> np.ndarray:
        """(N,) int64 ids; vectorised over code points (the 1 MB text takes ~0.1 s)."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        uniq, inverse = np.unique(codes, return_inverse=True)
        lut = np.array([self._index.get(chr(c), self.unk_id) for c in uniq], dtype=np.int64)
        return lut[inverse.reshape(-1)] if len(codes) else np.zeros(0, dtype=np.int64)


# Words (letters, digits, underscore), runs of whitespace, single other characters: every
# character falls in exactly one class, so joining the tokens gives back the text.
WORD_PATTERN = re.compile(r"\w+|\s+|[^\w\s]")


class WordTokenizer(_Vocabulary):
    """Word-level ids: words, whitespace runs and punctuation marks, most frequent first.

    ``decode(encode(text)) == text`` whenever every token of ``text`` is in the vocabulary
    (case is kept). Tokens beyond the ``max_vocab - 1`` most frequent map to the last id,
    the unknown id, which decodes to ``<unk>``.
    """

    kind, field, unk = "word", "tokens", UNK_WORD

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if len(set(tokens)) != len(tokens) or any(not t for t in tokens):
            raise ValueError("tokens must be distinct non-empty strings")
        super().__init__(tokens)

    @property
    def tokens(self) -> list[str]:
        return self._items

    @classmethod
    def from_text(cls, text: str, max_vocab: int = 10_000, min_freq: int = 1) -> WordTokenizer:
        """Keep the ``max_vocab - 1`` most frequent tokens seen ``min_freq`` times or more.

        Ties are broken alphabetically so the vocabulary does not depend on dict order.
        """
        if max_vocab < 2:
            raise ValueError(f"max_vocab must be >= 2 (one token + unknown), got {max_vocab}")
        counts = Counter(WORD_PATTERN.findall(text))
        ranked = sorted(
            (t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t)
        )
        return cls(ranked[: max_vocab - 1])

    def encode(self, text: str) -> np.ndarray:
        """(N,) int64 ids of the tokens of ``text``."""
        unk = self.unk_id
        pieces = WORD_PATTERN.findall(text)
        return np.fromiter(
            (self._index.get(t, unk) for t in pieces), dtype=np.int64, count=len(pieces)
        )


def build_tokenizer(kind: str, train_text: str, **options: Any) -> CharTokenizer | WordTokenizer:
    """``"char"`` or ``"word"`` tokenizer fitted on the training text only (options: word's
    ``max_vocab``, ``min_freq``)."""
    if kind == "char":
        if options:
            raise TypeError(f"char tokenizer takes no options, got {sorted(options)}")
        return CharTokenizer.from_text(train_text)
    if kind == "word":
        return WordTokenizer.from_text(train_text, **options)
    raise ValueError(f"tokenizer kind must be 'char' or 'word', got {kind!r}")


def tokenizer_from_dict(d: dict[str, Any]) -> CharTokenizer | WordTokenizer:
    """Inverse of ``to_dict`` for either kind."""
    kinds = {CharTokenizer.kind: CharTokenizer, WordTokenizer.kind: WordTokenizer}
    if d.get("kind") not in kinds:
        raise ValueError(f"unknown tokenizer kind {d.get('kind')!r}")
    return kinds[d["kind"]].from_dict(d)


def _checked_ids(ids: Iterable[int] | np.ndarray | torch.Tensor, vocab_size: int) -> list[int]:
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    flat = np.asarray(ids, dtype=np.int64).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= vocab_size):
        raise ValueError(f"token ids must be in [0, {vocab_size}), got {flat.min()}..{flat.max()}")
    return flat.tolist()
