"""Doctest collection: modules of optional extras are skipped when the extra is missing."""

from __future__ import annotations

import importlib.util


def _missing(*modules: str) -> bool:
    return any(importlib.util.find_spec(m) is None for m in modules)


collect_ignore = []
if _missing("sklearn"):
    collect_ignore += ["src/absgd/sklearn", "tests/test_sklearn_solvers.py"]
if _missing("transformers", "accelerate"):
    collect_ignore += ["src/absgd/integrations/huggingface.py", "tests/integrations/hf_run.py"]
if _missing("lightning"):
    collect_ignore += ["src/absgd/integrations/lightning.py", "tests/integrations/lightning_run.py"]
