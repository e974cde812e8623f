"""tiny-shakespeare for the character-level LSTM study: loading, tokenisers, splits, batches, leak.

Text: the 1,115,394-character tiny-shakespeare, cut as the Hugging Face hub cuts it: train = the
first 90 % (1,003,854 characters), validation = the next 5 % (55,770), test = the last 5 % (55,770).

Two ways of cutting train/validation for the study (test is always the hub's test part):

- ``temporal``: contiguous, as on the hub. Validation text follows the training text and shares no
  passage with it, so validation loss measures generalisation to unseen text.
- ``random``: fixed-length windows overlapping by ``seq_len + 1 - stride`` tokens over train +
  validation, shuffled into train and validation windows. A validation window's halves also lie in
  neighbouring training windows, so this set-up leaks; ``ngram_leak`` measures by how much.

Token ids live in int64 tensors and windows are start offsets into them, so a batch is one gather
on whatever device the tensors were moved to (no DataLoader, no Python loop per sample).
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from raysweep.data.errors import DataError

HUB_ID = "karpathy/tiny_shakespeare"
HUB_ALIASES = {HUB_ID: HUB_ID, "tiny_shakespeare": HUB_ID}  # the pre-2023 name redirects there
DATA_DIR_ENV = "RAYSWEEP_DATA_DIR"  # a folder holding tiny_shakespeare/ (the shared data root)
LOCAL_NAME = "tiny_shakespeare"  # the data set's folder name under $RAYSWEEP_DATA_DIR
SYNTHETIC = "synthetic"  # source name of the built-in synthetic text
SPLIT_NAMES = ("train", "validation", "test")
HELD_OUT_FRACTION = 0.05  # validation and test each; the rest (90 %) is train, as on the hub
SPLIT_KINDS = ("temporal", "random")

_HOW_TO_FIX = (
    f"Point at a local copy with --data PATH (a folder in hub layout such as "
    f"<data>/{LOCAL_NAME} with plain_text/{{train,validation,test}}-*.parquet, or a UTF-8 .txt "
    f"file, cut 90/5/5) or set {DATA_DIR_ENV} to the folder that contains {LOCAL_NAME}/."
)


# ---------------------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class TextSplits:
    """The three parts of the text, and where they came from (logged with each run)."""

    train: str
    validation: str
    test: str
    source: str  # human-readable: which folder, file or hub id, and how it was cut

    def encode(self, tokenizer: Tokenizer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Token ids of train, validation and test, ready for ``make_splits``."""
        return (
            tokenizer.encode(self.train),
            tokenizer.encode(self.validation),
            tokenizer.encode(self.test),
        )


def load_text(source: str | os.PathLike[str] | None = None) -> TextSplits:
    """Load tiny-shakespeare (or another text) as train/validation/test strings.

    ``source``:

    - ``None``: ``$RAYSWEEP_DATA_DIR/tiny_shakespeare`` if that variable is set and the folder
      exists, else the hub id ``karpathy/tiny_shakespeare``.
    - a folder in hub layout (as saved under ``plain_text/``, column ``text``, splits train,
      validation, test); a folder that merely contains ``tiny_shakespeare/`` (the data root) works.
    - any UTF-8 plain-text file: cut contiguously 90/5/5, as the hub cuts tiny-shakespeare (so
      ``input.txt`` gives exactly the hub's three parts).
    - ``"synthetic"``: ``synthetic_text()``, a small deterministic text for tests and smoke runs.
    - ``"karpathy/tiny_shakespeare"`` (or ``"tiny_shakespeare"``) when no such local path exists:
      the hub.

    Every failure (missing path, wrong layout, not UTF-8, empty, hub unreachable) raises
    ``DataError`` with one message that says what was tried and how to point at a local copy.
    """
    if source is None:
        data_dir = os.environ.get(DATA_DIR_ENV)
        if data_dir and (Path(data_dir).expanduser() / LOCAL_NAME).is_dir():
            return _load_folder(Path(data_dir).expanduser() / LOCAL_NAME)
        why = (
            f"${DATA_DIR_ENV}={data_dir} has no {LOCAL_NAME}/ folder"
            if data_dir
            else f"${DATA_DIR_ENV} is not set"
        )
        return _load_hub(HUB_ID, why_hub=why)
    text = os.fspath(source)
    if text == SYNTHETIC:
        return _cut(synthetic_text(), "synthetic text (synthetic_text(), cut 90/5/5)")
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "plain_text").is_dir() and (path / LOCAL_NAME).is_dir():
            path = path / LOCAL_NAME  # the data root was given
        return _load_folder(path)
    if path.exists():
        return _load_file(path)
    if text in HUB_ALIASES:
        return _load_hub(HUB_ALIASES[text], why_hub=f"no local path {text!r}")
    raise DataError(f"no such file or folder: {path}. {_HOW_TO_FIX}")


def _load_hub(hub_id: str, why_hub: str) -> TextSplits:
    import datasets  # lazy: importing datasets takes about a second

    try:
        dsd = datasets.load_dataset(hub_id)
    except Exception as exc:  # noqa: BLE001 - anything from datasets/hub becomes one DataError
        raise DataError(
            f"could not load {hub_id!r} from the Hugging Face hub ({why_hub}; datasets said: "
            f"{_first_line(exc)}). {_HOW_TO_FIX}"
        ) from None
    return _from_dataset_dict(dsd, f"Hugging Face hub {hub_id}", where=hub_id)


def _load_folder(path: Path) -> TextSplits:
    import datasets  # lazy: importing datasets takes about a second

    try:
        dsd = datasets.load_dataset(str(path))
    except Exception as exc:  # noqa: BLE001 - anything from datasets becomes one DataError
        raise DataError(
            f"{path} is not a data set folder in hub layout (datasets said: {_first_line(exc)})."
            f"{_txt_hint(path)} {_HOW_TO_FIX}"
        ) from None
    return _from_dataset_dict(dsd, f"local folder {path} (hub layout)", where=str(path))


def _from_dataset_dict(dsd: Any, description: str, where: str) -> TextSplits:
    """Check splits and column, then join each split's rows (one row per split on the hub)."""
    splits = sorted(dsd.keys()) if hasattr(dsd, "keys") else []
    missing = [s for s in SPLIT_NAMES if s not in splits]
    if missing:
        hint = _txt_hint(Path(where)) if Path(where).is_dir() else ""
        raise DataError(
            f"{where} has splits {splits}, but tiny-shakespeare needs {list(SPLIT_NAMES)} "
            f"(missing {missing}).{hint} {_HOW_TO_FIX}"
        )
    parts = {}
    for name in SPLIT_NAMES:
        columns = list(dsd[name].column_names)
        if "text" not in columns:
            raise DataError(
                f"{where}: split {name!r} has columns {columns}, no 'text' column. {_HOW_TO_FIX}"
            )
        parts[name] = "".join(str(t) for t in dsd[name]["text"] if t is not None)
    empty = [name for name, t in parts.items() if not t]
    if empty:
        raise DataError(f"{where}: split(s) {empty} hold no text. {_HOW_TO_FIX}")
    return TextSplits(parts["train"], parts["validation"], parts["test"], description)


def _load_file(path: Path) -> TextSplits:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}. {_HOW_TO_FIX}") from None
    try:
        text = raw.decode("utf-8-sig")  # a leading byte-order mark is not part of the text
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not UTF-8 text (invalid byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start}); a .txt source must be UTF-8 plain text. {_HOW_TO_FIX}"
        ) from None
    if not text.strip():
        raise DataError(f"{path} holds no text. {_HOW_TO_FIX}")
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


def _first_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}".strip()


def _txt_hint(path: Path) -> str:
    try:
        txts = sorted(p.name for p in path.glob("*.txt"))
    except OSError:
        return ""
    if not txts:
        return ""
    return f" To cut a plain-text file 90/5/5 pass the file itself, e.g. {path / txts[0]}."


# --------------------------------------------------------------- the sweep's once-per-node read


def resolve_source(source: str | os.PathLike[str] | None = None) -> str:
    """The source ``load_text`` would read, spelled so that every trial reads the same: an absolute
    path (a data root becomes its ``tiny_shakespeare/``), ``"synthetic"`` or the hub id.

    DataError for a path that does not exist (the message ``load_text`` gives).
    """
    if source is None:
        data_dir = os.environ.get(DATA_DIR_ENV)
        if data_dir and (Path(data_dir).expanduser() / LOCAL_NAME).is_dir():
            return str((Path(data_dir).expanduser() / LOCAL_NAME).resolve())
        return HUB_ID
    text = os.fspath(source)
    if text == SYNTHETIC:
        return SYNTHETIC
    path = Path(text).expanduser()
    if path.is_dir() and not (path / "plain_text").is_dir() and (path / LOCAL_NAME).is_dir():
        path = path / LOCAL_NAME
    if path.exists():
        return str(path.resolve())
    if text in HUB_ALIASES:
        return HUB_ALIASES[text]
    raise DataError(f"no such file or folder: {path}. {_HOW_TO_FIX}")


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
                for name in ("train", "validation", "test")}  # fmt: skip

    arrays, meta = cached_arrays(f"tiny_shakespeare|{source_fingerprint(source)}", decode)
    parts = {name: bytes(arrays[name]).decode("utf-8") for name in ("train", "validation", "test")}
    return TextSplits(**parts, source=source), meta["content_sha256"]


def prepare(data: str | None) -> tuple[str, str]:
    """The sweep driver's hook (``Study.data_path``): resolve ``--data`` and read the text once on
    this node; returns (source every trial loads, SHA-256 of the text's bytes)."""
    source = resolve_source(data)
    return source, load_cached_text(source)[1]


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


# ------------------------------------------------------------------------------------- tokenisers


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


class CharTokenizer:
    """One id per character of the training text (sorted), plus a last id for unseen characters.

    tiny-shakespeare's training part has 65 distinct characters: ids 0..64, unknown = 65,
    ``vocab_size`` = 66. The unknown id never occurs in its validation or test parts.
    """

    kind = "char"

    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("chars must be distinct single characters")
        self.chars = chars
        self._index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """Vocabulary = the distinct characters of ``text`` (pass the training text only)."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + 1

    @property
    def unk_id(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """(N,) int64 ids; vectorised over code points (the 1 MB text takes ~0.1 s)."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        uniq, inverse = np.unique(codes, return_inverse=True)
        lut = np.array([self._index.get(chr(c), self.unk_id) for c in uniq], dtype=np.int64)
        return lut[inverse.reshape(-1)] if len(codes) else np.zeros(0, dtype=np.int64)

    def decode(self, ids: Iterable[int] | np.ndarray | torch.Tensor) -> str:
        """Text of ``ids``; the unknown id becomes U+FFFD."""
        table = self.chars + [UNK_CHAR]
        return "".join(table[i] for i in _checked_ids(ids, self.vocab_size))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable; save it beside a checkpoint."""
        return {"kind": self.kind, "chars": list(self.chars)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharTokenizer:
        if d.get("kind") != cls.kind:
            raise ValueError(f"not a char tokenizer: kind={d.get('kind')!r}")
        return cls(d["chars"])


# Words (letters, digits, underscore), runs of whitespace, single other characters: every
# character falls in exactly one class, so joining the tokens gives back the text.
WORD_PATTERN = re.compile(r"\w+|\s+|[^\w\s]")


class WordTokenizer:
    """Word-level ids: words, whitespace runs and punctuation marks, most frequent first.

    ``decode(encode(text)) == text`` whenever every token of ``text`` is in the vocabulary
    (case is kept). Tokens beyond the ``max_vocab - 1`` most frequent map to the last id,
    the unknown id, which decodes to ``<unk>``.
    """

    kind = "word"

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if len(set(tokens)) != len(tokens) or any(not t for t in tokens):
            raise ValueError("tokens must be distinct non-empty strings")
        self.tokens = tokens
        self._index = {t: i for i, t in enumerate(tokens)}

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

    @property
    def vocab_size(self) -> int:
        return len(self.tokens) + 1

    @property
    def unk_id(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> np.ndarray:
        """(N,) int64 ids of the tokens of ``text``."""
        unk = self.unk_id
        pieces = WORD_PATTERN.findall(text)
        return np.fromiter(
            (self._index.get(t, unk) for t in pieces), dtype=np.int64, count=len(pieces)
        )

    def decode(self, ids: Iterable[int] | np.ndarray | torch.Tensor) -> str:
        """Text of ``ids``; the unknown id becomes ``<unk>``."""
        table = self.tokens + [UNK_WORD]
        return "".join(table[i] for i in _checked_ids(ids, self.vocab_size))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable; save it beside a checkpoint."""
        return {"kind": self.kind, "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WordTokenizer:
        if d.get("kind") != cls.kind:
            raise ValueError(f"not a word tokenizer: kind={d.get('kind')!r}")
        return cls(d["tokens"])


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


# ------------------------------------------------------------------------------ splits, batches


@dataclass(frozen=True)
class Windows:
    """Fixed-length windows over a token tensor: ``tokens[s : s + seq_len + 1]`` for s in starts.

    Input x is the first ``seq_len`` tokens of a window, target y the last ``seq_len``.
    """

    tokens: torch.Tensor  # (N,) int64 token ids
    starts: torch.Tensor  # (W,) int64 window start offsets into tokens
    seq_len: int  # tokens per input sequence (T); a window holds T + 1
    offset: int = 0  # position of tokens[0] in the whole text (train + validation + test ids)

    def __len__(self) -> int:
        return int(self.starts.numel())

    @property
    def num_targets(self) -> int:
        """Predicted tokens in one pass over all windows (W * T)."""
        return len(self) * self.seq_len

    def to(self, device: torch.device | str) -> Windows:
        """Both tensors on ``device`` (once per trial; batches are then gathered there)."""
        return Windows(self.tokens.to(device), self.starts.to(device), self.seq_len, self.offset)


@dataclass(frozen=True)
class SplitData:
    """Train/validation/test windows of one split set-up (``make_splits``)."""

    train: Windows
    validation: Windows
    test: Windows
    split: str  # "temporal" or "random"
    stride: int  # start-to-start distance of train and validation windows

    def to(self, device: torch.device | str) -> SplitData:
        return SplitData(
            self.train.to(device),
            self.validation.to(device),
            self.test.to(device),
            self.split,
            self.stride,
        )


def make_splits(
    train_ids: np.ndarray | torch.Tensor | Sequence[int],
    val_ids: np.ndarray | torch.Tensor | Sequence[int],
    test_ids: np.ndarray | torch.Tensor | Sequence[int],
    *,
    split: str = "temporal",
    seq_len: int = 128,
    seed: int = 0,
    stride: int | None = None,
) -> SplitData:
    """Windows for train, validation and test from the ids of the three contiguous parts.

    ``stride`` (default ``seq_len // 2``) is the start-to-start distance of train and
    validation windows in both set-ups, so their only difference is where windows come from:

    - ``temporal``: train windows over the training part only, validation windows over the
      validation part only (ordered, disjoint: all train positions precede all validation ones).
    - ``random``: windows over train + validation ids concatenated, shuffled with ``seed`` and
      dealt into train and validation in the proportion of the two parts (about 95:5).

    Test: non-overlapping windows (stride ``seq_len``) over the test part, in both set-ups.
    """
    if split not in SPLIT_KINDS:
        raise ValueError(f"split must be one of {SPLIT_KINDS}, got {split!r}")
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    stride = max(1, seq_len // 2) if stride is None else int(stride)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    train, val, test = (_as_ids(a) for a in (train_ids, val_ids, test_ids))
    for name, ids in (("train", train), ("validation", val), ("test", test)):
        if ids.numel() < seq_len + 1:
            raise DataError(
                f"the {name} part has {ids.numel()} tokens, fewer than seq_len + 1 = "
                f"{seq_len + 1}: use a longer text or a shorter seq_len."
            )
    n_train, n_val = train.numel(), val.numel()
    test_w = Windows(test, _starts(test.numel(), seq_len, seq_len), seq_len, n_train + n_val)
    if split == "temporal":
        return SplitData(
            Windows(train, _starts(n_train, seq_len, stride), seq_len, 0),
            Windows(val, _starts(n_val, seq_len, stride), seq_len, n_train),
            test_w,
            split,
            stride,
        )
    both = torch.cat([train, val])
    starts = _starts(both.numel(), seq_len, stride)
    n_val_windows = max(1, round(len(starts) * n_val / both.numel()))
    order = torch.randperm(len(starts), generator=torch.Generator().manual_seed(seed))
    val_starts = starts[order[:n_val_windows]].sort().values
    train_starts = starts[order[n_val_windows:]].sort().values
    return SplitData(
        Windows(both, train_starts, seq_len),
        Windows(both, val_starts, seq_len),
        test_w,
        split,
        stride,
    )


def _as_ids(ids: np.ndarray | torch.Tensor | Sequence[int]) -> torch.Tensor:
    if isinstance(ids, torch.Tensor):
        return ids.detach().to(torch.int64).reshape(-1).cpu()
    return torch.from_numpy(np.asarray(ids, dtype=np.int64).reshape(-1).copy())


def _starts(n_tokens: int, seq_len: int, stride: int) -> torch.Tensor:
    """Starts 0, stride, ... of every full window (seq_len + 1 tokens) in n_tokens."""
    return torch.arange(0, n_tokens - seq_len, stride, dtype=torch.int64)


def batches(
    windows: Windows,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass over ``windows``: (x, y), each (B, T) int64 on the windows' device, y[:, t] =
    x[:, t + 1] continued by one token. Shuffled with ``seed`` (pass e.g. seed + epoch for a
    new order every epoch); ``shuffle=False`` keeps window order (evaluation)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(windows)
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(n)
    device = windows.starts.device
    order = order.to(device)
    offsets = torch.arange(windows.seq_len + 1, device=device)  # (T + 1,)
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        if drop_last and idx.numel() < batch_size:
            break
        chunk = windows.tokens[windows.starts[idx, None] + offsets]  # (B, T + 1)
        yield chunk[:, :-1], chunk[:, 1:]


def stream_batches(
    tokens: torch.Tensor, batch_size: int, seq_len: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive chunks for truncated BPTT: the ids are cut into ``batch_size`` contiguous
    streams (rows), and batch k+1 row b continues batch k row b, so the model's (detached) state
    can be carried from one batch to the next. (x, y) are (B, T) with y = x shifted by one."""
    per_row = (tokens.numel() - 1) // batch_size
    if per_row < seq_len:
        raise ValueError(f"{tokens.numel()} tokens are too few for {batch_size} rows of {seq_len}")
    xs = tokens[: per_row * batch_size].reshape(batch_size, per_row)  # (B, N / B)
    ys = tokens[1 : per_row * batch_size + 1].reshape(batch_size, per_row)  # (B, N / B)
    for t in range(0, per_row - seq_len + 1, seq_len):
        yield xs[:, t : t + seq_len], ys[:, t : t + seq_len]


# ------------------------------------------------------------------------------------------- leak

_HASH_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier (golden ratio)


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """(len(ids) - n + 1,) uint64 polynomial hashes of all n-grams (arithmetic mod 2**64)."""
    m = len(ids) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    vals = ids.astype(np.uint64) + np.uint64(1)
    h = np.zeros(m, dtype=np.uint64)
    for k in range(n):  # Horner over the n positions, vectorised over all n-grams
        h = h * _HASH_BASE + vals[k : k + m]
    return h


def _members(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """Boolean mask: which ``values`` are in the sorted, unique ``sorted_set`` (binary search)."""
    if sorted_set.size == 0:
        return np.zeros(values.shape, dtype=bool)
    pos = np.searchsorted(sorted_set, values).clip(max=sorted_set.size - 1)
    return sorted_set[pos] == values


def _ids_of(x: str | np.ndarray | torch.Tensor | Sequence[int]) -> np.ndarray:
    """Strings become their Unicode code points; ids stay ids."""
    if isinstance(x, str):
        return np.frombuffer(x.encode("utf-32-le"), dtype="<u4").astype(np.int64)
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(np.int64).reshape(-1)
    return np.asarray(x, dtype=np.int64).reshape(-1)


def ngram_leak(
    train: str | np.ndarray | torch.Tensor | Windows,
    val_windows: Windows | Sequence[str | np.ndarray | torch.Tensor],
    n: int = 32,
    *,
    max_windows: int | None = 20_000,
    seed: int = 0,
) -> float:
    """Share of validation windows that contain an n-gram also present in the training data.

    Precisely: let G be the set of all n-grams (n consecutive tokens; characters for the char
    tokenizer or for plain strings) inside the training data, where the training data is the
    string/ids given, or for a ``Windows`` the union of its windows (an n-gram counts only if it
    lies wholly inside one training window). A validation window (all its seq_len + 1 tokens, or
    the whole string/array given) leaks if at least one of its n-grams is in G. The result is
    leaking windows / windows checked, in [0, 1]. N-grams are compared by 64-bit polynomial hashes
    (collisions are negligible at this size). Give both sides in the same representation (both
    strings, or ids from the same tokenizer). If there are more than ``max_windows`` validation
    windows, a ``seed``-ed sample of that many is checked. The 1 MB text takes well under a second.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if isinstance(train, Windows):
        ids = _ids_of(train.tokens)
        span = train.seq_len + 1
        # mark n-gram starts s .. s + span - n of every window with a difference array
        diff = np.zeros(len(ids) + 1, dtype=np.int64)
        starts = train.starts.cpu().numpy()
        if span >= n:
            np.add.at(diff, starts, 1)
            np.add.at(diff, starts + span - n + 1, -1)
        inside = np.cumsum(diff)[: max(len(ids) - n + 1, 0)] > 0
        train_hashes = _ngram_hashes(ids, n)[inside]
    else:
        train_hashes = _ngram_hashes(_ids_of(train), n)
    train_set = np.unique(train_hashes)

    rng = np.random.default_rng(seed)
    if isinstance(val_windows, Windows):
        count = len(val_windows)
        pick = np.arange(count)
        if max_windows is not None and count > max_windows:
            pick = np.sort(rng.choice(count, size=max_windows, replace=False))
        if len(pick) == 0:
            raise ValueError("no validation windows to check")
        ids = _ids_of(val_windows.tokens)
        span = val_windows.seq_len + 1
        if span < n:
            return 0.0
        hit = _members(_ngram_hashes(ids, n), train_set)
        csum = np.concatenate([[0], np.cumsum(hit)])
        s = val_windows.starts.cpu().numpy()[pick]
        leaked = csum[s + span - n + 1] - csum[s] > 0
        return float(leaked.mean())
    items = list(val_windows)
    if max_windows is not None and len(items) > max_windows:
        items = [items[i] for i in np.sort(rng.choice(len(items), max_windows, replace=False))]
    if not items:
        raise ValueError("no validation windows to check")
    leaked_count = sum(bool(_members(_ngram_hashes(_ids_of(w), n), train_set).any()) for w in items)
    return leaked_count / len(items)
