"""CIFAR-10 as uint8 arrays: hub id, local hub-layout folder, or a tiny synthetic set.

Images are (N, 32, 32, 3) uint8 in HWC order and labels (N,) int64, decoded once per node into
the disk cache (``raysweep.data.cache``) and memory-mapped by every trial. The validation split is
carved from train, stratified and seeded; the test split is only for final evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raysweep.data.cache import cached_arrays, source_fingerprint
from raysweep.data.errors import DataError
from raysweep.data.sources import SYNTHETIC, DataSet, load_hub_dataset, local_copy, resolve_source
from raysweep.search_spaces.cnn import check_net

HUB_ID = "uoft-cs/cifar10"
LOCAL_NAME = "cifar10"
LOSSLESS_NAME = "cifar10-lossless-subset"  # original (PNG) pixels of test images 0..999; local copies only
CIFAR10 = DataSet(LOCAL_NAME, HUB_ID, "plain_text/{train,test}-*.parquet")
LOSSLESS = DataSet(LOSSLESS_NAME, HUB_ID, "plain_text/{train,test}-*.parquet")
CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
MEAN = (0.4914, 0.4822, 0.4465)  # per-channel mean of the training images, in [0, 1]
STD = (0.2470, 0.2435, 0.2616)  # per-channel std of the training images


@dataclass
class ImageSet:
    """One split: images (N, H, W, 3) uint8 (often a read-only memmap), labels (N,) int64."""

    images: np.ndarray
    labels: np.ndarray
    source: str
    content_sha256: str

    def __len__(self) -> int:
        return len(self.labels)


def load_cifar10(data: str | None, split: str, dataset: DataSet = CIFAR10) -> ImageSet:
    """One split ("train" or "test") of CIFAR-10 from ``data`` (see ``sources.resolve_source``)."""
    source = resolve_source(data, dataset)
    if source == SYNTHETIC:
        images, labels = synthetic_images(split)
        return ImageSet(images, labels, SYNTHETIC, f"synthetic-{split}")

    def decode() -> dict[str, np.ndarray]:
        ds = load_hub_dataset(source, dataset, split=split)
        cols = set(ds.column_names)
        img_col = "img" if "img" in cols else "image" if "image" in cols else None
        if img_col is None or "label" not in cols:
            raise DataError(
                f"{source!r} split {split!r} has columns {sorted(cols)}; expected an image "
                f"column 'img' and 'label' as in {HUB_ID}; {dataset.hint()}"
            )
        table = ds.with_format("numpy")
        chunks = [table[i : i + 5000][img_col] for i in range(0, len(ds), 5000)]
        images = np.concatenate(chunks).astype(np.uint8)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise DataError(
                f"{source!r}: expected RGB images (N, H, W, 3), got {images.shape}; {dataset.hint()}"
            )
        return {"images": images, "labels": np.asarray(ds["label"], dtype=np.int64)}

    arrays, meta = cached_arrays(f"cifar10|{source_fingerprint(source)}|{split}", decode)
    return ImageSet(arrays["images"], arrays["labels"], source, meta["content_sha256"])


def prepare(data: str | None) -> tuple[str, str]:
    """Decode both splits once on this node (the sweep driver calls this); (source, content hash)."""
    train, test = load_cifar10(data, "train"), load_cifar10(data, "test")
    return train.source, f"{train.content_sha256[:16]}+{test.content_sha256[:16]}"


def check_configs(configs: list[dict[str, Any]], source: str, options: dict[str, Any]) -> None:
    """The sweep's pre-flight check (``Study.check_path``) of every configuration against the images.

    A batch larger than the training split, a CNN with no shape (widths, or filters and layers) or
    one that pools its input below 1x1 (a 2x2 pool after every second conv, or in every stage of
    ``widths``; the whitening conv takes 1 px off) or a pixel ``image_size`` the images cannot be
    average-pooled to would each fail inside every trial, or worse, train on something else than
    asked: one line here instead."""
    train = load_cifar10(source, "train")
    side = int(train.images.shape[1])
    n_train = len(trial_split(train.labels, options)[0])  # the split the trials will train on
    for c in configs:
        size = int(c.get("image_size", side))
        if size > side or side % size:
            raise DataError(f"{source}: image_size {size} needs images whose side is a multiple of it; "
                            f"these are {side}x{side}")  # fmt: skip
        if "image_size" not in c:  # the CNN study's
            _check_cnn(c, side, source)
        have = min(n_train, int(c.get("train_images", n_train)))
        if int(c["batch_size"]) > have:
            raise DataError(f"{source}: batch_size {c['batch_size']} is larger than the {have:,} training "
                            f"images a trial has (val_fraction {options.get('val_fraction', VAL_FRACTION)}); "
                            "use a smaller --set batch_size")  # fmt: skip


def _check_cnn(c: dict[str, Any], side: int, source: str) -> None:
    """The configuration names a CNN, which pools the ``side`` x ``side`` images no smaller than 1x1."""
    widths = check_net(c)
    side -= int(c.get("whiten", 0))  # the 2x2 whitening conv has no padding: 32 -> 31
    pools = len(widths) or int(c.get("layers")) // 2
    if side >> pools < 1:
        most = f"{side.bit_length() - 1} stages in widths" if widths else f"--set layers={2 * side.bit_length() - 1}"
        raise DataError(f"{source}: this CNN pools {side}x{side} maps {pools} times, below 1x1; use at most {most}")


def lossless_source(data: str, override: str | None = None) -> str | None:
    """Where the lossless subset is, for the resolved CIFAR-10 source ``data``; None if nowhere.

    ``synthetic`` -> synthetic. Else ``override`` (a folder, or "none"), else a sibling
    ``cifar10-lossless-subset/`` of a local ``data`` folder (so trials on other nodes find it by
    the path the driver resolved), else ``$RAYSWEEP_DATA_DIR/cifar10-lossless-subset``. The hub has
    no such set: never fall back to it (that would silently measure the JPEG-free claim on JPEGs).
    """
    if data == SYNTHETIC:
        return SYNTHETIC
    if override:
        if override == "none":
            return None
        if not Path(override).expanduser().exists():
            raise DataError(f"lossless subset {override!r} does not exist; pass a folder like "
                            f"$RAYSWEEP_DATA_DIR/{LOSSLESS_NAME}, or lossless=none")  # fmt: skip
        return str(Path(override).expanduser().resolve())
    sibling = Path(data).parent / LOSSLESS_NAME if Path(data).exists() else None
    if sibling is not None and sibling.exists():
        return str(sibling.resolve())
    found = local_copy(LOSSLESS_NAME)
    return str(found) if found is not None else None


def load_lossless_test(source: str) -> ImageSet:
    """The lossless subset's test split (CIFAR-10 test images 0..999, original pixels)."""
    if source == SYNTHETIC:
        images, labels = synthetic_images("lossless", n=100)
        return ImageSet(images, labels, SYNTHETIC, "synthetic-lossless")
    return load_cifar10(source, "test", LOSSLESS)


def prepare_with_lossless(data: str | None) -> tuple[str, str]:
    """``prepare`` plus the lossless subset's test split (likelihood studies); (source, content hash)."""
    source, digest = prepare(data)
    where = lossless_source(source)
    lossless = load_lossless_test(where).content_sha256[:16] if where else "no-lossless-subset"
    return source, f"{digest}+{lossless}"


def downscale(images: np.ndarray, size: int, chunk: int = 5000) -> np.ndarray:
    """(N, S, S, 3) uint8 -> (N, size, size, 3) uint8: mean of each (S/size)^2 block, rounded.

    Average pooling keeps the whole image (a crop would keep a patch of texture): the global
    layout that the models' long-range context is for survives, as in downsampled-ImageNet sets.
    """
    n, s = images.shape[0], images.shape[1]
    if size == s:
        return np.asarray(images)
    if size < 1 or s % size:
        raise ValueError(f"image size {size} must divide {s}")
    f = s // size
    out = np.empty((n, size, size, images.shape[3]), dtype=np.uint8)
    for i in range(0, n, chunk):
        block = np.asarray(images[i : i + chunk], dtype=np.float32)
        pooled = block.reshape(-1, size, f, size, f, block.shape[-1]).mean(axis=(2, 4))
        out[i : i + chunk] = np.rint(pooled).astype(np.uint8)  # (n, size, size, 3)
    return out


def resized(ds: ImageSet, size: int) -> ImageSet:
    """``ds`` at ``size`` x ``size`` (``downscale``), cached per node beside the full-size arrays."""
    if ds.images.shape[1] == size:
        return ds
    if ds.source == SYNTHETIC:
        return ImageSet(downscale(ds.images, size), ds.labels, ds.source, f"{ds.content_sha256}-{size}")
    def decode() -> dict[str, np.ndarray]:
        return {"images": downscale(ds.images, size), "labels": np.asarray(ds.labels)}

    arrays, meta = cached_arrays(f"downscaled|{ds.content_sha256}|{size}", decode)
    return ImageSet(arrays["images"], arrays["labels"], ds.source, meta["content_sha256"])


def synthetic_images(
    split: str, n: int | None = None, size: int = 32, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """A tiny learnable CIFAR-shaped set: each class is a fixed colour and coarse pattern, plus noise.

    Deterministic per split, so tests and smoke runs see the same data everywhere; a small CNN
    separates the classes within an epoch or two (by colour, which survives crop and flip).
    """
    n = n or (1000 if split == "train" else 200)
    proto_rng = np.random.default_rng(1234)  # same class prototypes for every split
    colour = proto_rng.uniform(30, 225, size=(num_classes, 1, 1, 3))
    pattern = proto_rng.uniform(-40, 40, size=(num_classes, 4, 4, 3))
    protos = colour + pattern.repeat(size // 4, axis=1).repeat(size // 4, axis=2)  # (K, size, size, 3)
    rng = np.random.default_rng({"train": 0, "test": 1}.get(split, 2))
    labels = np.arange(n, dtype=np.int64) % num_classes
    rng.shuffle(labels)
    noise = rng.normal(0, 25, size=(n, size, size, 3))
    images = np.clip(protos[labels] + noise, 0, 255).astype(np.uint8)
    return images, labels


VAL_FRACTION = 0.1  # of the training images held out for validation, unless --option val_fraction=F


def trial_split(labels: np.ndarray, options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The (train_idx, val_idx) a trial uses under the study options ``val_fraction`` and ``split_seed``:
    the same validation set for every trial, and the one the pre-flight check sizes batches against."""
    fraction = float(options.get("val_fraction", VAL_FRACTION))
    return stratified_split(labels, fraction, int(options.get("split_seed", 0)))


def stratified_split(
    labels: np.ndarray, val_fraction: float = VAL_FRACTION, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified (train_idx, val_idx) over ``labels``: each class split in proportion."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = int(round(len(idx) * val_fraction))
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
