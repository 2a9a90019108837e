"""Data for imbalanced and noisy-label classification.

- imbalance: :func:`long_tail_counts`, :func:`select_long_tailed`, :func:`make_long_tailed`
  (the exact CIFAR-LT protocol of Cui et al. 2019 / Cao et al. 2019),
- label noise: :func:`corrupt_labels` (symmetric / asymmetric, exact per-class counts),
- splits: :func:`train_val_split`, :func:`with_validation` (stratified, seeded),
- readers: CIFAR archives, image folders and tar archives (cached), IDX, list files, CSV and
  NumPy tables, and the embedded long-tailed digits,
- batches: :class:`BatchLoader` (whole-batch tensors, resumable, shardable),
  :class:`BatchAugment` (vectorised crop / flip / normalise), :class:`ClassAwareSampler`.

Every in-memory reader returns :class:`ArrayDataset` objects (``x``, ``y``, ``class_names``).
Pillow (``torch-absgd[data]``) and scikit-learn (``torch-absgd[sklearn]``) are imported only by
the readers that need them.
"""

from absgd.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    AugmentParams,
    BatchAugment,
    channel_stats,
    to_nchw,
)
from absgd.data.cache import default_cache_dir
from absgd.data.dataset import ArrayDataset, DataSplits, validate_labels
from absgd.data.download import download_url, md5_file
from absgd.data.errors import ChecksumError, DataFormatError, DownloadError
from absgd.data.imbalance import long_tail_counts, make_long_tailed, select_long_tailed
from absgd.data.loader import BatchLoader, epoch_order, shard_steps, steps_per_epoch
from absgd.data.noise import (
    CIFAR10_ASYMMETRIC,
    FMNIST_ASYMMETRIC,
    MNIST_ASYMMETRIC,
    corrupt_labels,
    next_in_group_mapping,
)
from absgd.data.readers import (
    CIFAR_ARCHIVES,
    ListFileDataset,
    from_array,
    load_cifar,
    load_digits_lt,
    load_fashion_mnist,
    load_idx_dataset,
    load_mnist,
    read_cifar_archive,
    read_csv,
    read_idx,
    read_image_folder,
    read_list_file,
)
from absgd.data.samplers import ClassAwareSampler
from absgd.data.splits import stratified_split_indices, train_val_split, with_validation

__all__ = [
    "CIFAR10_ASYMMETRIC",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR_ARCHIVES",
    "FMNIST_ASYMMETRIC",
    "MNIST_ASYMMETRIC",
    "ArrayDataset",
    "AugmentParams",
    "BatchAugment",
    "BatchLoader",
    "ChecksumError",
    "ClassAwareSampler",
    "DataFormatError",
    "DataSplits",
    "DownloadError",
    "ListFileDataset",
    "channel_stats",
    "corrupt_labels",
    "default_cache_dir",
    "download_url",
    "epoch_order",
    "from_array",
    "load_cifar",
    "load_digits_lt",
    "load_fashion_mnist",
    "load_idx_dataset",
    "load_mnist",
    "long_tail_counts",
    "make_long_tailed",
    "md5_file",
    "next_in_group_mapping",
    "read_cifar_archive",
    "read_csv",
    "read_idx",
    "read_image_folder",
    "read_list_file",
    "select_long_tailed",
    "shard_steps",
    "steps_per_epoch",
    "stratified_split_indices",
    "to_nchw",
    "train_val_split",
    "validate_labels",
    "with_validation",
]
