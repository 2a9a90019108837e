"""Test-suite configuration."""

from __future__ import annotations

import importlib.util

# The scikit-learn estimator is an optional extra: without scikit-learn its module (collected
# for doctests) and its tests are left out instead of failing to import.
collect_ignore = []
if importlib.util.find_spec("sklearn") is None:
    collect_ignore += ["test_sklearn.py"]
