"""BatchLoader: coverage, determinism, exact resume, sharding, lazy path; samplers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from absgd.data import ArrayDataset, BatchAugment, BatchLoader, ClassAwareSampler, shard_steps


@pytest.fixture
def images() -> ArrayDataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(50, 6, 6, 3), dtype=np.uint8)
    y = rng.integers(0, 4, size=50)
    return ArrayDataset(x, y, ("a", "b", "c", "d"))


def collect(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def test_epoch_covers_every_sample_once(images: ArrayDataset) -> None:
    loader = BatchLoader(images, 8, seed=1)
    batches = collect(loader)
    assert len(batches) == len(loader) == 7
    assert [len(y) for _, y in batches] == [8] * 6 + [2]
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.dtype == torch.uint8 and x.shape == (50, 3, 6, 6)
    # every stored image appears exactly once, with its label
    stored = {images.x[i].tobytes(): int(images.y[i]) for i in range(50)}
    seen = [(xi.permute(1, 2, 0).numpy().tobytes(), int(yi)) for xi, yi in zip(x, y, strict=True)]
    assert sorted(seen) == sorted(stored.items())
    assert loader.epoch == 1 and loader.step == 0  # moved on to the next epoch


def test_same_seed_same_batches_and_epochs_differ(images: ArrayDataset) -> None:
    aug = BatchAugment(padding=2)
    a = collect(BatchLoader(images, 8, augment=aug, seed=3))
    b = collect(BatchLoader(images, 8, augment=aug, seed=3))
    assert all(
        torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b, strict=True)
    )
    loader = BatchLoader(images, 8, seed=3)
    e0 = torch.cat([y for _, y in loader])
    e1 = torch.cat([y for _, y in loader])
    assert not torch.equal(e0, e1)


def test_no_shuffle_and_drop_last(images: ArrayDataset) -> None:
    loader = BatchLoader(images, 8, shuffle=False, drop_last=True)
    ys = [y for _, y in loader]
    assert len(ys) == len(loader) == 6
    np.testing.assert_array_equal(torch.cat(ys).numpy(), images.y[:48])


def test_resume_mid_epoch_is_exact(images: ArrayDataset) -> None:
    aug = BatchAugment(padding=2, mean=(0.5,) * 3, std=(0.25,) * 3)
    reference = BatchLoader(images, 8, augment=aug, seed=7)
    uninterrupted = collect(reference) + collect(reference)  # epochs 0 and 1

    first = BatchLoader(images, 8, augment=aug, seed=7)
    got = []
    for batch in first:
        got.append(batch)
        if len(got) == 3:
            break
    state = first.state_dict()
    assert state["epoch"] == 0 and state["step"] == 3

    resumed = BatchLoader(images, 8, augment=aug, seed=0)  # the seed comes from the state
    resumed.load_state_dict(state)
    got += collect(resumed) + collect(resumed)
    assert len(got) == len(uninterrupted)
    for (xa, ya), (xb, yb) in zip(got, uninterrupted, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_resume_rejects_another_global_batch(images: ArrayDataset) -> None:
    state = BatchLoader(images, 8).state_dict()
    with pytest.raises(ValueError, match=r"global batch is 8 .*batch_size=4 × world_size=1"):
        BatchLoader(images, 4).load_state_dict(state)


def test_resume_on_another_number_of_ranks_continues_with_the_same_global_batches(
    images: ArrayDataset,
) -> None:
    aug = BatchAugment(padding=2)
    single = BatchLoader(images, 8, augment=aug, seed=3)
    it = iter(single)
    next(it)
    next(it)
    state = single.state_dict()  # epoch 0, step 2
    rest = list(it)
    ranks = [BatchLoader(images, 4, augment=aug, seed=0, rank=r, world_size=2) for r in (0, 1)]
    for loader in ranks:
        loader.load_state_dict(state)
    sharded = [list(loader) for loader in ranks]
    assert len(sharded[0]) == len(rest)
    for (x, y), (x0, y0), (x1, y1) in zip(rest, *sharded, strict=True):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_together_equal_one_process_with_the_global_batch(
    images: ArrayDataset, drop_last: bool
) -> None:
    aug = BatchAugment(padding=2)
    single = collect(BatchLoader(images, 10, augment=aug, seed=4, drop_last=drop_last))
    ranks = [
        collect(
            BatchLoader(images, 5, augment=aug, seed=4, rank=r, world_size=2, drop_last=drop_last)
        )
        for r in range(2)
    ]
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for k, (xs, ys) in enumerate(single):
        x = torch.cat([ranks[0][k][0], ranks[1][k][0]])
        y = torch.cat([ranks[0][k][1], ranks[1][k][1]])
        assert torch.equal(x, xs) and torch.equal(y, ys)


def test_uneven_shards_are_padded_by_wrapping() -> None:
    order = np.array([9, 4, 7, 1, 0, 3, 8])
    r0 = shard_steps(order, 2, rank=0, world_size=2)
    r1 = shard_steps(order, 2, rank=1, world_size=2)
    assert [s.tolist() for s in r0] == [[9, 4], [0, 3]]
    assert [s.tolist() for s in r1] == [[7, 1], [8, 9]]  # padded with the first index


def test_tensor_pair_input_and_device_argument() -> None:
    x = torch.randn(10, 4)
    y = torch.arange(10) % 3
    loader = BatchLoader((x, y), 4, shuffle=False, device="cpu")
    xs = torch.cat([b for b, _ in loader])
    assert torch.equal(xs, x)


class SquareDataset(Dataset):
    """A lazy dataset returning (uint8 CHW tensor, label), like ListFileDataset."""

    def __init__(self, images: ArrayDataset) -> None:
        self.x, self.labels = images.x, images.y

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.x[i]).permute(2, 0, 1).contiguous(), int(self.labels[i])


@pytest.mark.parametrize("workers", [0, 2])
def test_lazy_dataset_gives_the_same_batches(images: ArrayDataset, workers: int) -> None:
    aug = BatchAugment(padding=1)
    eager = collect(BatchLoader(images, 8, augment=aug, seed=2, sampler="sqrt"))
    lazy_loader = BatchLoader(
        SquareDataset(images), 8, augment=aug, seed=2, sampler="sqrt", num_workers=workers
    )
    lazy = collect(lazy_loader)
    assert len(lazy) == len(eager)
    for (xa, ya), (xb, yb) in zip(lazy, eager, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # resume in the middle of a lazy epoch
    lazy_loader.set_epoch(0, step=5)
    tail = collect(lazy_loader)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(tail, eager[5:], strict=True))


def test_loader_validation(images: ArrayDataset) -> None:
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        BatchLoader(images, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        BatchLoader(images, 0)
    with pytest.raises(ValueError, match="sampler must be one of"):
        BatchLoader(images, 4, sampler="balanced")
    with pytest.raises(ValueError, match="no batch to serve: 50 samples per epoch"):
        BatchLoader(images, 64, drop_last=True)
    with pytest.raises(TypeError, match="ArrayDataset"):
        BatchLoader([1, 2, 3], 2)  # type: ignore[arg-type]


# -- samplers -------------------------------------------------------------------------------
@pytest.fixture
def skewed() -> np.ndarray:
    return np.random.default_rng(3).permutation(np.repeat(np.arange(3), [900, 90, 9]))


def test_class_probabilities(skewed: np.ndarray) -> None:
    sqrt = ClassAwareSampler(skewed, "sqrt").class_probabilities
    expected = np.sqrt([900, 90, 9]) / np.sqrt([900, 90, 9]).sum()
    np.testing.assert_allclose(sqrt, expected)
    np.testing.assert_allclose(
        ClassAwareSampler(skewed, "class_balanced").class_probabilities, [1 / 3] * 3
    )
    np.testing.assert_allclose(
        ClassAwareSampler(skewed, "uniform").class_probabilities, np.array([900, 90, 9]) / 999
    )
    # P(sample of class c) = (n_c^q / Σ_k n_k^q) / n_c, q = 0.25
    p = ClassAwareSampler(skewed, power=0.25).sample_probabilities()
    n = np.array([900, 90, 9], dtype=np.float64)
    expected = n**0.25 / (n**0.25).sum() / n
    np.testing.assert_allclose(p, expected[skewed], rtol=1e-12)
    assert p.sum() == pytest.approx(1.0)


def test_class_balanced_draws_are_balanced(skewed: np.ndarray) -> None:
    sampler = ClassAwareSampler(skewed, "class_balanced", num_samples=30_000)
    idx = sampler.epoch_indices(seed=0, epoch=0)
    freq = np.bincount(skewed[idx], minlength=3) / len(idx)
    np.testing.assert_allclose(freq, [1 / 3] * 3, atol=0.015)
    tail = idx[skewed[idx] == 2]
    assert set(tail.tolist()) == set(np.flatnonzero(skewed == 2).tolist())  # all 9 reached
    np.testing.assert_array_equal(idx, sampler.epoch_indices(seed=0, epoch=0))
    assert not np.array_equal(idx, sampler.epoch_indices(seed=0, epoch=1))


def test_uniform_sampler_is_a_permutation(skewed: np.ndarray) -> None:
    idx = ClassAwareSampler(skewed).epoch_indices(seed=1, epoch=0)
    assert sorted(idx.tolist()) == list(range(len(skewed)))
    assert not np.array_equal(idx, np.arange(len(skewed)))


def test_empty_classes_are_never_drawn() -> None:
    # Labels (0, 0, 2): class 1 is empty. Class-balanced sampling gives the two non-empty
    # classes 1/2 each, so sample 2 (the only one of class 2) is drawn with probability 1/2
    # and samples 0 and 1 with 1/4 each; the empty class's share must not leak to a neighbour.
    sampler = ClassAwareSampler([0, 0, 2], "class_balanced", num_classes=3, num_samples=40_000)
    assert sampler.class_probabilities.tolist() == [0.5, 0.0, 0.5]
    np.testing.assert_allclose(sampler.sample_probabilities(), [0.25, 0.25, 0.5])
    idx = sampler.epoch_indices(0, 0)
    assert len(idx) == 40_000
    freq = np.bincount(idx, minlength=3) / len(idx)
    np.testing.assert_allclose(freq, [0.25, 0.25, 0.5], atol=0.01)  # 4 standard deviations
