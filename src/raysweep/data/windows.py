"""Windows, splits, batches and the n-gram leak: token ids -> what a language model trains on.

Two ways of cutting train/validation (``SPLIT_KINDS``; test is always the held-out test part):

- ``temporal``: contiguous. Validation text follows the training text and shares no passage with
  it, so validation loss measures generalisation to unseen text.
- ``random``: fixed-length windows overlapping by ``seq_len + 1 - stride`` tokens over train +
  validation, shuffled into train and validation windows. A validation window's halves also lie in
  neighbouring training windows, so this set-up leaks; ``ngram_leak`` measures by how much.

Token ids live in int64 tensors and windows are start offsets into them, so a batch is one gather
on whatever device the tensors were moved to (no DataLoader, no Python loop per sample).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from raysweep.data.errors import DataError

SPLIT_KINDS = ("temporal", "random")


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
