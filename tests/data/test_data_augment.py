"""Batch augmentation against per-image references built with torch.nn.functional.pad."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from absgd.data import AugmentParams, BatchAugment, channel_stats, to_nchw


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.randint(
        0, 256, (16, 3, 8, 10), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )


def reference(x: torch.Tensor, params: AugmentParams, pad: int, mode: str) -> torch.Tensor:
    """Per-image loop: pad, slice the window at the offset, flip."""
    out = []
    _, _, h, w = x.shape
    for img, (dy, dx), flip in zip(x, params.offsets.tolist(), params.flips.tolist(), strict=True):
        padded = F.pad(img.double()[None], (pad, pad, pad, pad), mode=mode)[0]
        crop = padded[:, dy : dy + h, dx : dx + w]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


@pytest.mark.parametrize("mode", ["constant", "reflect"])
def test_crop_and_flip_match_reference(batch: torch.Tensor, mode: str) -> None:
    aug = BatchAugment(padding=3, flip=True, padding_mode=mode)
    params = aug.sample(len(batch), torch.Generator().manual_seed(1))
    assert params.offsets.min() >= 0 and params.offsets.max() <= 6
    assert 0 < int(params.flips.sum()) < len(batch)
    out = aug.apply(batch, params)
    expected = reference(batch, params, 3, mode) / 255.0
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-6)


def test_offsets_are_uniform_on_0_to_2p_and_flips_fair() -> None:
    # 70,000 draws, padding 3: each of the 7 offsets per axis has probability 1/7 (standard
    # error 0.0013) and a flip 1/2 (0.0019); the bounds are 5 standard errors wide.
    params = BatchAugment(padding=3, flip=True).sample(70_000, torch.Generator().manual_seed(2))
    for axis in (0, 1):
        freq = torch.bincount(params.offsets[:, axis], minlength=7).double() / 70_000
        assert len(freq) == 7
        torch.testing.assert_close(
            freq, torch.full((7,), 1 / 7, dtype=torch.float64), rtol=0, atol=0.0066
        )
    assert abs(params.flips.double().mean().item() - 0.5) < 0.0095
    # the two axes are drawn independently
    joint = torch.bincount(params.offsets[:, 0] * 7 + params.offsets[:, 1], minlength=49)
    torch.testing.assert_close(
        joint.double() / 70_000, torch.full((49,), 1 / 49, dtype=torch.float64), rtol=0, atol=0.0027
    )


def test_shapes_and_dtypes_kept(batch: torch.Tensor) -> None:
    aug = BatchAugment(padding=4, flip=True, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    out = aug(batch, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape and out.dtype == torch.float32 and out.is_contiguous()
    half = BatchAugment(padding=2, dtype=torch.float64)(batch.float(), torch.Generator())
    assert half.dtype == torch.float64 and half.shape == batch.shape
    # float input is not rescaled by 1/255
    plain = BatchAugment(padding=0, flip=False)(batch.float())
    torch.testing.assert_close(plain, batch.float())


def test_flip_of_flip_is_identity(batch: torch.Tensor) -> None:
    aug = BatchAugment(padding=0, flip=True)
    once = aug(batch.float(), torch.Generator().manual_seed(9))
    twice = aug(once, torch.Generator().manual_seed(9))  # same seed: same flip mask
    torch.testing.assert_close(twice, batch.float(), rtol=0, atol=0)
    every = AugmentParams(
        torch.zeros(len(batch), 2, dtype=torch.long), torch.ones(len(batch), dtype=torch.bool)
    )
    torch.testing.assert_close(aug.apply(batch, every), batch.flip(-1).float() / 255)


def test_crops_stay_inside_the_padded_image() -> None:
    # distinct pixel values: a crop must be a window of the zero-padded image
    x = torch.arange(1, 1 + 6 * 2 * 7 * 7, dtype=torch.float64).reshape(6, 2, 7, 7)
    out = BatchAugment(padding=2, flip=False)(x, torch.Generator().manual_seed(5))
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(len(x)):
        windows = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if torch.equal(padded[i, :, dy : dy + 7, dx : dx + 7], out[i])
        ]
        assert len(windows) == 1


def test_normalisation_formula(batch: torch.Tensor) -> None:
    mean, std = (0.49, 0.48, 0.45), (0.2, 0.25, 0.3)
    out = BatchAugment(padding=0, flip=False, mean=mean, std=std)(batch)
    m = torch.tensor(mean, dtype=torch.float64)[:, None, None]
    s = torch.tensor(std, dtype=torch.float64)[:, None, None]
    torch.testing.assert_close(out.double(), (batch.double() / 255 - m) / s, rtol=0, atol=1e-5)
    assert BatchAugment(mean=mean, std=std).for_eval().is_random is False


def test_same_seed_same_batch(batch: torch.Tensor) -> None:
    aug = BatchAugment()
    a = aug(batch, torch.Generator().manual_seed(3))
    b = aug(batch, torch.Generator().manual_seed(3))
    c = aug(batch, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_validation(batch: torch.Tensor) -> None:
    with pytest.raises(ValueError, match=r"padding_mode.*wrap"):
        BatchAugment(padding_mode="wrap")
    with pytest.raises(ValueError, match="mean has 1 channels, the batch 3"):
        BatchAugment(mean=(0.5,), std=(0.5,))(batch)
    with pytest.raises(ValueError, match="std must be positive"):
        BatchAugment(mean=(0.5,), std=(0.0,))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        BatchAugment()(batch[0])


def test_layout_helpers() -> None:
    imgs = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    t = to_nchw(imgs)
    assert t.shape == (2, 3, 3, 4) and t[1, 2, 0, 3] == imgs[1, 0, 3, 2]
    assert to_nchw(np.zeros((5, 6, 7), np.uint8)).shape == (5, 1, 6, 7)
    mean, std = channel_stats(np.array([[[[0, 51]], [[255, 51]]]], dtype=np.uint8))
    np.testing.assert_allclose(mean, (0.5, 0.2))
    np.testing.assert_allclose(std, (0.5, 0.0), atol=1e-12)
