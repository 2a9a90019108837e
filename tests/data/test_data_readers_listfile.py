"""List-file datasets (ImageNet-LT style) with images written by the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from absgd.data import BatchAugment, BatchLoader, DataFormatError, ListFileDataset, read_list_file

pytest.importorskip("PIL")

from data_helpers import array_png, solid_png

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30), (200, 100, 50)]
SIZES = [(40, 30), (30, 40), (64, 64), (50, 20), (32, 33)]  # (width, height)


@pytest.fixture
def listed(tmp_path: Path) -> tuple[Path, Path, list[int]]:
    root = tmp_path / "images"
    labels = [2, 0, 1, 2, 2]
    lines = ["# ImageNet-LT style list", ""]
    for i, (color, size, label) in enumerate(zip(COLORS, SIZES, labels, strict=True)):
        rel = f"train/class {label}/img_{i}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(solid_png(color, size))
        lines.append(f"{'/' if i == 3 else ''}{rel} {label}")
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "train.txt", root, labels


def test_items_are_resized_center_crops(listed) -> None:
    list_file, root, labels = listed
    ds = ListFileDataset(list_file, root, resize=24, crop=16)
    assert len(ds) == 5 and ds.num_classes == 3
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.class_counts().tolist() == [1, 1, 3]
    for i in range(5):
        img, label = ds[i]
        assert img.dtype == torch.uint8 and img.shape == (3, 16, 16) and label == labels[i]
        # a solid image stays solid through resize and crop
        assert torch.equal(
            img, torch.tensor(COLORS[i], dtype=torch.uint8)[:, None, None].expand(3, 16, 16)
        )


def test_no_resize_keeps_exact_pixels(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    (tmp_path / "a.png").write_bytes(array_png(pixels))
    (tmp_path / "list.txt").write_text("a.png 1\n")
    ds = ListFileDataset(tmp_path / "list.txt", tmp_path, resize=None, crop=None, num_classes=4)
    img, label = ds[0]
    assert label == 1 and ds.num_classes == 4
    np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), pixels)
    center = ListFileDataset(tmp_path / "list.txt", tmp_path, resize=None, crop=4)[0][0]
    np.testing.assert_array_equal(center.permute(1, 2, 0).numpy(), pixels[1:5, 2:6])
    gray = ListFileDataset(tmp_path / "list.txt", tmp_path, resize=None, crop=None, mode="L")[0][0]
    assert gray.shape == (1, 6, 9)


def test_batches_through_workers(listed) -> None:
    list_file, root, labels = listed
    ds = ListFileDataset(list_file, root, resize=8, crop=8)
    loader = BatchLoader(ds, 2, shuffle=False, augment=BatchAugment(padding=1), num_workers=2)
    ys = []
    for x, y in loader:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 8, 8)
        ys.extend(y.tolist())
    assert ys == labels


def test_list_file_errors(tmp_path: Path, listed) -> None:
    list_file, root, _ = listed
    (tmp_path / "bad.txt").write_text("a.png 1\nb.png x\n")
    with pytest.raises(DataFormatError, match=r"bad\.txt:2: expected '<path> <integer label>'"):
        read_list_file(tmp_path / "bad.txt")
    (tmp_path / "missing.txt").write_text("train/nope.png 0\n")
    ds = ListFileDataset(tmp_path / "missing.txt", root)
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        ds[0]
    with pytest.raises(ValueError, match=r"\[0, 2\).*\[2\]"):
        ListFileDataset(list_file, root, num_classes=2)
    with pytest.raises(FileNotFoundError, match="image root"):
        ListFileDataset(list_file, tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"crop \(300\) must not exceed resize \(256\)"):
        ListFileDataset(list_file, root, crop=300)
