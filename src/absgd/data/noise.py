"""Synthetic label noise with exact per-class flip counts.

Protocol of Patrini et al. ("Making Deep Neural Networks Robust to Label Noise: a Loss
Correction Approach", CVPR 2017) and Zhang & Sabuncu ("Generalized Cross Entropy Loss for
Training Deep Neural Networks with Noisy Labels", NeurIPS 2018), with exact counts instead of
independent coin flips: of the ``n_c`` samples whose clean label is ``c``, exactly
``k_c = ⌊rate · n_c⌋`` are chosen uniformly at random (without replacement) and relabelled.

- ``symmetric``: each chosen sample gets a uniformly random *other* class,
  ``c + u (mod C)`` with ``u`` uniform in ``{1, …, C-1}``. (Some papers draw from all ``C``
  classes, so that ``rate·(C-1)/C`` actually changes; here every chosen sample changes.)
- ``asymmetric``: each chosen sample of a source class ``s`` gets ``mapping[s]``; classes that
  are not sources keep their labels. Mappings:

  * ``"cifar10"``: truck→automobile, bird→airplane, cat→dog, dog→cat, deer→horse
    (``{9: 1, 2: 0, 3: 5, 5: 3, 4: 7}``);
  * ``"mnist"``: 2→7, 3→8, 5→6, 6→5, 7→1 (Patrini et al.);
  * ``"fmnist"`` (Fashion-MNIST, this library's choice of look-alike classes, in the spirit
    of the CIFAR-10 mapping): T-shirt/top→shirt, shirt→T-shirt/top, pullover→coat,
    coat→pullover, sandal→sneaker (``{0: 6, 6: 0, 2: 4, 4: 2, 5: 7}``);
  * ``groups=`` (any dataset; CIFAR-100 with its coarse labels): the classes of one group,
    sorted by index, each flip to the next one, the last to the first (cyclic). Singleton
    groups are left clean.

The flips are selected from the *clean* labels (cat→dog and dog→cat do not interact).

Differences from the reference implementations: those flip each sample independently with
probability ``rate`` (so the realised rate varies with the seed) or, for symmetric noise, may
"flip" to the same class; here the number of flips per class is exact and every flip changes
the label, so ``rate`` is the realised noise rate of every (source) class.
``⌊rate · n_c⌋`` is computed with a 1e-9 tolerance so that e.g. 0.29·100 gives 29 although
``0.29 * 100 == 28.999999999999996`` in binary floating point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np

from absgd.data._util import floor_fraction
from absgd.data.dataset import validate_labels

__all__ = [
    "CIFAR10_ASYMMETRIC",
    "FMNIST_ASYMMETRIC",
    "MNIST_ASYMMETRIC",
    "NOISE_KINDS",
    "corrupt_labels",
    "next_in_group_mapping",
]

NOISE_KINDS = ("symmetric", "asymmetric")

#: CIFAR-10 class-dependent flips (class indices in the canonical, alphabetical order).
CIFAR10_ASYMMETRIC: Mapping[int, int] = MappingProxyType({9: 1, 2: 0, 3: 5, 5: 3, 4: 7})
#: MNIST class-dependent flips of Patrini et al. 2017.
MNIST_ASYMMETRIC: Mapping[int, int] = MappingProxyType({2: 7, 3: 8, 5: 6, 6: 5, 7: 1})
#: Fashion-MNIST flips between look-alike classes (this library's choice).
FMNIST_ASYMMETRIC: Mapping[int, int] = MappingProxyType({0: 6, 6: 0, 2: 4, 4: 2, 5: 7})
_NAMED = {"cifar10": CIFAR10_ASYMMETRIC, "mnist": MNIST_ASYMMETRIC, "fmnist": FMNIST_ASYMMETRIC}


def next_in_group_mapping(groups: Sequence[int]) -> dict[int, int]:
    """Cyclic next-class-within-group mapping; ``groups[c]`` is the group of class ``c``.

    >>> next_in_group_mapping([0, 1, 0, 1, 0, 2])
    {0: 2, 2: 4, 4: 0, 1: 3, 3: 1}
    """
    members: dict[int, list[int]] = {}
    for c, g in enumerate(groups):
        members.setdefault(int(g), []).append(c)
    mapping: dict[int, int] = {}
    for g in sorted(members):
        cls = members[g]
        if len(cls) > 1:
            mapping.update({c: cls[(j + 1) % len(cls)] for j, c in enumerate(cls)})
    return mapping


def _resolve_mapping(
    mapping: Mapping[int, int] | str | None, groups: Sequence[int] | None, num_classes: int
) -> dict[int, int]:
    if (mapping is None) == (groups is None):
        raise ValueError(
            "kind='asymmetric' needs exactly one of mapping= ('cifar10', 'mnist', 'fmnist' or "
            "a dict {source: target}) and groups= (the group of every class, e.g. CIFAR-100's "
            f"superclasses); got mapping={mapping!r}, groups={groups!r}"
        )
    if groups is not None:
        if len(groups) != num_classes:
            raise ValueError(
                f"groups must give one group per class ({num_classes}), got {len(groups)}"
            )
        return next_in_group_mapping(groups)
    if isinstance(mapping, str):
        if mapping not in _NAMED:
            raise ValueError(f"mapping must be one of {sorted(_NAMED)} or a dict, got {mapping!r}")
        resolved = dict(_NAMED[mapping])
    else:
        resolved = {int(s): int(t) for s, t in dict(mapping).items()}  # type: ignore[arg-type]
    for s, t in resolved.items():
        if not (0 <= s < num_classes and 0 <= t < num_classes) or s == t:
            raise ValueError(
                f"mapping entries must be source -> different target in [0, {num_classes}); "
                f"got {s} -> {t}"
            )
    return resolved


def corrupt_labels(
    labels: Sequence[int] | np.ndarray,
    rate: float,
    kind: str,
    num_classes: int,
    seed: int = 0,
    *,
    mapping: Mapping[int, int] | str | None = None,
    groups: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly ``⌊rate · n_c⌋`` labels of every (source) class; deterministic in ``seed``.

    Args:
        labels: clean labels in ``[0, num_classes)``.
        rate: fraction of each class to flip, in ``[0, 1]``.
        kind: ``"symmetric"`` or ``"asymmetric"`` (see the module docstring).
        num_classes: ``C``.
        seed: seed of the ``numpy.random.default_rng`` that picks and relabels samples.
        mapping, groups: the asymmetric rule (exactly one of them for ``"asymmetric"``).

    Returns:
        ``(noisy_labels, flipped)``: an ``int64`` copy with the flips applied and a boolean
        mask, ``flipped == (noisy_labels != labels)``.

    >>> noisy, flipped = corrupt_labels([0] * 5 + [1] * 5, 0.4, "symmetric", 2, seed=0)
    >>> flipped.reshape(2, 5).sum(axis=1).tolist()  # ⌊0.4 · 5⌋ = 2 flips per class
    [2, 2]
    """
    y = validate_labels(labels, num_classes)
    if not (0.0 <= float(rate) <= 1.0):
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")
    if kind == "symmetric":
        if num_classes < 2 and floor_fraction(rate, len(y)) > 0:
            raise ValueError("symmetric noise needs num_classes >= 2")
        targets = None
    elif kind == "asymmetric":
        targets = _resolve_mapping(mapping, groups, num_classes)
    else:
        raise ValueError(f"kind must be one of {NOISE_KINDS}, got {kind!r}")
    if kind == "symmetric" and (mapping is not None or groups is not None):
        raise ValueError("mapping= and groups= apply only to kind='asymmetric'")

    rng = np.random.default_rng(seed)
    noisy = y.copy()
    sources = range(num_classes) if targets is None else sorted(targets)
    for c in sources:
        idx = np.flatnonzero(y == c)
        k = floor_fraction(rate, len(idx))
        if k == 0:
            continue
        chosen = rng.permutation(idx)[:k]
        if targets is None:
            noisy[chosen] = (c + rng.integers(1, num_classes, size=k)) % num_classes
        else:
            noisy[chosen] = targets[c]
    return noisy, noisy != y
