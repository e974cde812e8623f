"""tiny-shakespeare, the text source of the language-model study: load, cut, cache, or synthesise.

Text: the 1,115,394-character tiny-shakespeare, cut as the Hugging Face hub cuts it: train = the
first 90 % (1,003,854 characters), validation = the next 5 % (55,770), test = the last 5 % (55,770).
Sources are resolved by ``sources.resolve_source`` like every data set's: the hub id, a local
folder in the hub's layout (``$RAYSWEEP_DATA_DIR/tiny_shakespeare``), any UTF-8 text file (cut
90/5/5 contiguously, so ``input.txt`` gives exactly the hub's parts), or ``"synthetic"``.
Tokenizers are in ``tokenizers``, windows, splits and the leak metric in ``windows``.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from raysweep.data.errors import DataError
from raysweep.data.sources import SYNTHETIC, DataSet, file_hint, first_line, load_hub_dataset, resolve_source

if TYPE_CHECKING:
    from raysweep.data.tokenizers import Tokenizer

HUB_ID = "karpathy/tiny_shakespeare"
LOCAL_NAME = "tiny_shakespeare"  # the data set's folder name under $RAYSWEEP_DATA_DIR
TINY_SHAKESPEARE = DataSet(
    LOCAL_NAME,
    HUB_ID,
    "plain_text/{train,validation,test}-*.parquet",
    aliases=("tiny_shakespeare",),  # the pre-2023 name redirects to HUB_ID
    file_suffix=".txt",
    file_note="UTF-8 plain text, cut 90/5/5",
)
SPLIT_NAMES = ("train", "validation", "test")
HELD_OUT_FRACTION = 0.05  # validation and test each; the rest (90 %) is train, as on the hub


@dataclass(frozen=True)
class TextSplits:
    """The three parts of the text, and where they came from (logged with each run)."""

    train: str
    validation: str
    test: str
    source: str  # human-readable: which folder, file or hub id, and how it was cut

    def encode(self, tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token ids of train, validation and test, ready for ``windows.make_splits``."""
        return (
            tokenizer.encode(self.train),
            tokenizer.encode(self.validation),
            tokenizer.encode(self.test),
        )


def load_text(source: str | os.PathLike[str] | None = None) -> TextSplits:
    """tiny-shakespeare (or another text) as train/validation/test strings, from any source
    ``sources.resolve_source`` accepts (``None``: the local copy, else the hub).

    Every failure (missing path, wrong layout, not UTF-8, empty, hub unreachable) raises
    ``DataError`` with one message that says what was tried and how to point at a local copy.
    """
    resolved = resolve_source(source, TINY_SHAKESPEARE)
    if resolved == SYNTHETIC:
        return _cut(synthetic_text(), "synthetic text (synthetic_text(), cut 90/5/5)")
    path = Path(resolved)
    if path.is_file():
        return _load_file(path)
    dsd = load_hub_dataset(resolved, TINY_SHAKESPEARE)
    where = f"local folder {path} (hub layout)" if path.is_dir() else f"Hugging Face hub {resolved}"
    return _from_dataset_dict(dsd, where, resolved)


def _from_dataset_dict(dsd: Any, description: str, where: str) -> TextSplits:
    """Check splits and column, then join each split's rows (one row per split on the hub)."""
    hint = TINY_SHAKESPEARE.hint()
    splits = sorted(dsd.keys()) if hasattr(dsd, "keys") else []
    missing = [s for s in SPLIT_NAMES if s not in splits]
    if missing:
        raise DataError(
            f"{where} has splits {splits}, but tiny-shakespeare needs {list(SPLIT_NAMES)} "
            f"(missing {missing}){file_hint(Path(where), TINY_SHAKESPEARE)}; {hint}"
        )
    parts = {}
    for name in SPLIT_NAMES:
        columns = list(dsd[name].column_names)
        if "text" not in columns:
            raise DataError(f"{where}: split {name!r} has columns {columns}, no 'text' column; {hint}")
        parts[name] = "".join(str(t) for t in dsd[name]["text"] if t is not None)
    empty = [name for name, t in parts.items() if not t]
    if empty:
        raise DataError(f"{where}: split(s) {empty} hold no text; {hint}")
    return TextSplits(parts["train"], parts["validation"], parts["test"], description)


def _load_file(path: Path) -> TextSplits:
    hint = TINY_SHAKESPEARE.hint()
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or first_line(exc)}; {hint}") from None
    try:
        text = raw.decode("utf-8-sig")  # a leading byte-order mark is not part of the text
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (invalid byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start}); a .txt source must be UTF-8 plain text; {hint}"
        ) from None
    if not text.strip():
        raise DataError(f"{path} holds no text; {hint}")
    return _cut(text, f"text file {path} (cut 90/5/5 contiguously)")


def _cut(text: str, description: str) -> TextSplits:
    """Contiguous 90/5/5 cut; for tiny-shakespeare's 1,115,394 characters it is the hub's cut."""
    held_out = math.floor(len(text) * HELD_OUT_FRACTION + 0.5)  # 55,770 for tiny-shakespeare
    n_train = len(text) - 2 * held_out
    if held_out == 0:
        raise DataError(
            f"{description}: {len(text)} characters are too few to cut 90/5/5 (need >= 10)."
        )
    return TextSplits(
        text[:n_train], text[n_train : n_train + held_out], text[n_train + held_out :], description
    )


# --------------------------------------------------------------- the sweep's once-per-node read


def load_cached_text(source: str) -> tuple[TextSplits, str]:
    """``load_text(source)`` read once per node: the three parts are kept as UTF-8 bytes in the
    disk cache (``raysweep.data.cache``), so later trials skip ``datasets`` and parquet entirely.
    Returns the parts and the SHA-256 of their bytes. ``source`` as ``resolve_source`` spells it.
    """
    from raysweep.data.cache import cached_arrays, source_fingerprint

    if source == SYNTHETIC:  # generated in milliseconds: nothing to cache
        texts = load_text(SYNTHETIC)
        digest = hashlib.sha256("\0".join((texts.train, texts.validation, texts.test)).encode())
        return texts, digest.hexdigest()

    def decode() -> dict[str, np.ndarray]:
        texts = load_text(source)
        return {name: np.frombuffer(getattr(texts, name).encode("utf-8"), dtype=np.uint8)
                for name in SPLIT_NAMES}  # fmt: skip

    arrays, meta = cached_arrays(f"tiny_shakespeare|{source_fingerprint(source)}", decode)
    parts = {name: bytes(arrays[name]).decode("utf-8") for name in SPLIT_NAMES}
    return TextSplits(**parts, source=source), meta["content_sha256"]


def check_configs(configs: list[dict[str, Any]], source: str, options: dict[str, Any]) -> None:
    """The sweep's pre-flight check (``Study.check_path``): every split must hold a whole window.

    A window is ``seq_len + 1`` tokens, and a token is at least one character, so a split with fewer
    characters cannot train or validate any configuration asking for it: one DataError line here
    instead of every trial failing inside Ray."""
    splits, _ = load_cached_text(source)
    need = max(int(c.get("seq_len", 0)) for c in configs) + 1 if configs else 0
    have, name = min((len(getattr(splits, n)), n) for n in ("train", "validation", "test"))
    if have < need:
        raise DataError(f"{splits.source}: the {name} split holds {have:,} characters, but seq_len {need - 1} "
                        f"needs windows of {need:,} tokens in every split; use a text of at least "
                        f"{math.ceil(need / HELD_OUT_FRACTION):,} characters or a smaller --set seq_len")  # fmt: skip


def prepare(data: str | None) -> tuple[str, str]:
    """The sweep driver's hook (``Study.data_path``): resolve ``--data`` and read the text once on
    this node; returns (source every trial loads, SHA-256 of the text's bytes)."""
    source = resolve_source(data, TINY_SHAKESPEARE)
    return source, load_cached_text(source)[1]


# --------------------------------------------------------------------------- the synthetic text


_SYN_SPEAKERS = ("ROMEO", "JULIET", "HAMLET", "OPHELIA", "KING LEAR", "PORTIA")
_SYN_WORDS = (
    "thou art my lord the king shall speak of love and death good night sweet prince what is "
    "a name to be or not that question sleep perchance dream fair lady gentle heart noble "
    "sword crown honour grief doth hath thy mine eyes tears blood"
).split()


def synthetic_text(n_chars: int = 50_000, seed: int = 0) -> str:
    """A deterministic play-like text: speakers and sentences of words drawn at random.

    Learnable (41 words, a fixed speaker/line format) yet with random word order, so passages of
    32 characters rarely repeat: a temporal split of it shows almost no n-gram leak while
    overlapping random windows do. Exactly ``n_chars`` characters.
    """
    rng = random.Random(seed)
    parts: list[str] = []
    size = 0
    while size < n_chars:
        lines = [f"{rng.choice(_SYN_SPEAKERS)}:"]
        for _ in range(rng.randint(1, 3)):
            words = [rng.choice(_SYN_WORDS) for _ in range(rng.randint(4, 9))]
            lines.append(" ".join(words).capitalize() + rng.choice(".!?"))
        block = "\n".join(lines) + "\n\n"
        parts.append(block)
        size += len(block)
    return "".join(parts)[:n_chars]
