"""CIFAR-10 loading, caching, splits and batched augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from raysweep.data import DataError
from raysweep.data.augment import crop_flip, crop_flip_normalize, to_float
from raysweep.data.cifar10 import CLASSES, MEAN, STD, load_cifar10, stratified_split


def test_synthetic_set_is_cifar_shaped_and_deterministic() -> None:
    a, b = load_cifar10("synthetic", "train"), load_cifar10("synthetic", "train")
    assert a.images.shape[1:] == (32, 32, 3) and a.images.dtype == np.uint8
    assert np.array_equal(a.images, b.images) and set(a.labels.tolist()) == set(range(10))


def test_stratified_split_is_seeded_disjoint_and_balanced() -> None:
    labels = np.repeat(np.arange(10), 100)
    tr, va = stratified_split(labels, 0.1, seed=3)
    tr2, va2 = stratified_split(labels, 0.1, seed=3)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 1000
    assert np.bincount(labels[va]).tolist() == [10] * 10
    assert not np.array_equal(va, stratified_split(labels, 0.1, seed=4)[1])


def test_augmentation_keeps_shapes_and_labels_and_varies_the_batch() -> None:
    imgs = torch.randint(0, 256, (64, 32, 32, 3), dtype=torch.uint8)
    labels = torch.arange(64)
    x = to_float(imgs, MEAN, STD)
    g = torch.Generator().manual_seed(0)
    y1, y2 = crop_flip(x, 4, g), crop_flip(x, 4, g)
    assert y1.shape == x.shape and labels.tolist() == list(range(64))
    assert not torch.equal(y1, y2) and not torch.equal(y1, x)
    changed = (y1 != x).flatten(1).any(1).float().mean()
    assert changed > 0.8  # nearly every image moved or flipped (p(no crop, no flip) = 1/162)


@pytest.mark.parametrize("fill", ["zero", "reflect"])
def test_crop_flip_is_a_pure_translation_or_mirror(fill: str) -> None:
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    for seed in range(20):
        y = crop_flip(x, pad=2, generator=torch.Generator().manual_seed(seed), fill=fill)
        for b in range(2):
            found = False
            for flip in (False, True):
                src = x[b, 0].flip(-1) if flip else x[b, 0]
                if fill == "zero":
                    padded = torch.nn.functional.pad(src, (2, 2, 2, 2))
                else:  # rows and columns -1, -2 are rows 1, 2: the image mirrored at its edge pixel
                    idx = torch.tensor([2, 1, *range(8), 6, 5])
                    padded = src[idx][:, idx]
                for dy in range(5):
                    for dx in range(5):
                        found |= torch.equal(padded[dy : dy + 8, dx : dx + 8], y[b, 0])
            assert found


def test_real_cifar10_loader_gives_uint8_images_and_balanced_classes(data_dir: Path) -> None:
    test = load_cifar10(str(data_dir / "cifar10"), "test")
    assert test.images.shape == (10000, 32, 32, 3) and test.images.dtype == np.uint8
    assert np.bincount(test.labels, minlength=10).tolist() == [1000] * 10
    assert len(CLASSES) == 10
    again = load_cifar10(str(data_dir / "cifar10"), "test")  # from the cache: a memory map
    assert isinstance(again.images, np.memmap) and again.content_sha256 == test.content_sha256


def test_missing_folder_gets_one_clear_message(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist.*RAYSWEEP_DATA_DIR"):
        load_cifar10(str(tmp_path / "nope"), "train")


def test_wrong_layout_folder_gets_one_clear_message(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a data set")
    with pytest.raises(DataError, match="expected an image column.*--data PATH"):
        load_cifar10(str(tmp_path), "train")


def test_unreachable_hub_without_local_copy_says_how_to_point_at_one(monkeypatch) -> None:
    monkeypatch.delenv("RAYSWEEP_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="uoft-cs/cifar10.*RAYSWEEP_DATA_DIR"):
        load_cifar10(None, "train")


@pytest.mark.parametrize(("pad", "fill"), [(4, "zero"), (2, "reflect"), (4, "reflect")])
def test_fused_crop_flip_normalize_equals_crop_flip_of_to_float(pad: int, fill: str) -> None:
    imgs = torch.randint(0, 256, (16, 32, 32, 3), dtype=torch.uint8)
    ref = crop_flip(to_float(imgs, MEAN, STD), pad, torch.Generator().manual_seed(7), fill=fill)
    out = crop_flip_normalize(imgs, MEAN, STD, pad, torch.Generator().manual_seed(7), fill=fill)
    assert out.shape == (16, 3, 32, 32) and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
