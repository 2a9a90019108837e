"""The package's layout: the library never depends on the training system, and the training
system's public names resolve."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import absgd
import absgd.training

_SYSTEM = ("absgd.training", "absgd.cli", "absgd.demo", "absgd.__main__")
# Optional extras: importable only with their packages installed.
_OPTIONAL = ("absgd.sklearn", "absgd.integrations.huggingface", "absgd.integrations.lightning")


def _library_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(absgd.__path__, prefix="absgd.")]
    return sorted(n for n in names if not n.startswith(_SYSTEM) and not n.startswith(_OPTIONAL))


def test_no_library_module_imports_the_training_system():
    modules = _library_modules()
    assert "absgd.weighting" in modules and "absgd.data.loader" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('absgd.training')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_training_system_names_resolve_lazily():
    code = (
        "import sys, absgd.cli\n"
        "print('absgd.training.runner' in sys.modules)\n"
        "from absgd.training import train\n"
        "print(train.__module__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "absgd.training.runner"]
    for name in absgd.training.__all__:
        assert getattr(absgd.training, name) is not None
