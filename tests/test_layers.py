"""Architecture rule at run time: importing any library module loads no Prefect.

The static rules (layers, no framework imports in the library, no import cycles) are import-linter
contracts in pyproject.toml, checked by `lint-imports` in `make test`.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import contentforge


def test_contentforge_never_imports_prefect() -> None:
    modules = [m.name for m in pkgutil.walk_packages(contentforge.__path__, "contentforge.")]
    assert "contentforge.batch" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "print(','.join(leaked))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "", f"contentforge imported {result.stdout.strip()}"
