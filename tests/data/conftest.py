"""Fixtures for the absgd.data tests: tiny generated archives and the optional shared data."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shared_data() -> Path:
    """``$ABSGD_SHARED_DATA`` or ``<repo>/../shared/data``; skip the test when absent."""
    env = os.environ.get("ABSGD_SHARED_DATA")
    root = Path(env) if env else REPO_ROOT.parent / "shared" / "data"
    if not root.is_dir():
        pytest.skip(f"shared data not found at {root} (set ABSGD_SHARED_DATA to its location)")
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Never let a test write to the user's ~/.cache: point ABSGD_CACHE_DIR to a temp dir."""
    monkeypatch.setenv("ABSGD_CACHE_DIR", str(tmp_path_factory.mktemp("absgd-cache")))


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


CifarWriter = Callable[..., dict]


@pytest.fixture
def write_cifar_archive() -> CifarWriter:
    """Write a tiny archive in the canonical CIFAR python format; return the expected content.

    ``name="cifar10"``: 5 training batches + test batch + batches.meta (10 classes);
    ``name="cifar100"``: train + test + meta with fine and coarse labels.
    """

    def write(path: Path, name: str = "cifar10", per_batch: int = 4, n_test: int = 6) -> dict:
        rng = np.random.default_rng(123)
        if name == "cifar10":
            folder, members, test, meta_name = (
                "cifar-10-batches-py",
                [f"data_batch_{i}" for i in range(1, 6)],
                "test_batch",
                "batches.meta",
            )
            num_classes = 10
        else:
            folder, members, test, meta_name = "cifar-100-python", ["train"], "test", "meta"
            num_classes = 100
        coarse_of = rng.permutation(np.repeat(np.arange(20), 5))  # 5 fine classes each
        expected: dict = {"train_rows": [], "train_y": [], "test_rows": None, "test_y": None}
        with tarfile.open(path, "w:gz") as tar:
            for member in [*members, test]:
                n = per_batch if member != test else n_test
                rows = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
                fine = rng.integers(0, num_classes, size=n).tolist()
                batch: dict = {"batch_label": f"{member} of tiny", "data": rows}
                if name == "cifar10":
                    batch["labels"] = fine
                else:
                    batch["fine_labels"] = fine
                    batch["coarse_labels"] = [int(coarse_of[f]) for f in fine]
                batch["filenames"] = [f"img_{member}_{i}.png" for i in range(n)]
                add_bytes(tar, f"{folder}/{member}", pickle.dumps(batch, protocol=2))
                if member == test:
                    expected["test_rows"], expected["test_y"] = rows, fine
                else:
                    expected["train_rows"].append(rows)
                    expected["train_y"].extend(fine)
            if name == "cifar10":
                names = [f"class{c}" for c in range(10)]
                meta = {"label_names": names, "num_cases_per_batch": per_batch}
            else:
                names = [f"fine{c:02d}" for c in range(100)]
                meta = {
                    "fine_label_names": names,
                    "coarse_label_names": [f"c{g}" for g in range(20)],
                }
            add_bytes(tar, f"{folder}/{meta_name}", pickle.dumps(meta, protocol=2))
            add_bytes(tar, f"{folder}/readme.html", b"<html></html>")
        expected["train_rows"] = np.concatenate(expected["train_rows"])
        expected["class_names"] = tuple(names)
        expected["coarse_of"] = coarse_of
        return expected

    return write
