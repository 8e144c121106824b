"""Every module of the project imports (mypy, with ignore_missing_imports, would not notice a
module that a rename left behind)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest


def modules() -> list[str]:
    names = []
    for package in ("services", "schemas", "deploy", "benchmarks"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if ".migrations" not in info.name:  # Alembic's env.py runs only under Alembic
                names.append(info.name)
    return names


@pytest.mark.parametrize("name", modules())
def test_module_imports(name: str) -> None:
    importlib.import_module(name)
