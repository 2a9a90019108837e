"""Doctest collection: modules of optional extras are skipped when the extra is missing."""

from __future__ import annotations

import importlib.util

collect_ignore = []
if importlib.util.find_spec("sklearn") is None:
    collect_ignore += ["src/absgd/sklearn.py"]
