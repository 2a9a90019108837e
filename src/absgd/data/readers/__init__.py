"""Dataset readers. Each returns arrays in memory (:class:`absgd.data.DataSplits` /
:class:`absgd.data.ArrayDataset`) except :class:`ListFileDataset`, which decodes lazily.
Nothing is downloaded unless ``download=True`` is passed (:func:`load_cifar` only)."""

from absgd.data.readers.cifar import CIFAR_ARCHIVES, load_cifar, read_cifar_archive
from absgd.data.readers.digits import load_digits_lt
from absgd.data.readers.folder import read_image_folder
from absgd.data.readers.idx import load_fashion_mnist, load_idx_dataset, load_mnist, read_idx
from absgd.data.readers.listfile import ListFileDataset, read_list_file
from absgd.data.readers.tabular import from_array, read_csv

__all__ = [
    "CIFAR_ARCHIVES",
    "ListFileDataset",
    "from_array",
    "load_cifar",
    "load_digits_lt",
    "load_fashion_mnist",
    "load_idx_dataset",
    "load_mnist",
    "read_cifar_archive",
    "read_csv",
    "read_idx",
    "read_image_folder",
    "read_list_file",
]
