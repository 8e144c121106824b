"""One shape for the three services: their domain and service layer depend on ports only. No
database, Kafka or faust library is loaded by importing them, directly or through what they
import, and no service-layer module imports an adapter (recovery's metrics excepted)."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.topics import SERVICES

FORBIDDEN = ("sqlalchemy", "faust", "aiokafka", "psycopg", "mode")


def layer_files(service: str, layer: str) -> list[Path]:
    root = Path(importlib.import_module(f"services.{service}").__file__ or "").parent
    return sorted(p for p in (root / layer).glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("service", SERVICES)
def test_importing_the_domain_and_service_layer_loads_no_database_or_kafka_library(
        service: str) -> None:
    modules = [f"services.{service}.{layer}.{p.stem}"
               for layer in ("domain", "service_layer") for p in layer_files(service, layer)]
    assert len(modules) >= 5, modules  # the glob found the layers
    script = (f"import sys, json\nfor m in {modules!r}: __import__(m)\n"
              "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", script], check=True,
                                           capture_output=True, text=True).stdout))
    assert "services" in loaded
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


@pytest.mark.parametrize("service", SERVICES)
def test_the_service_layer_imports_no_adapter(service: str) -> None:
    imported: dict[str, set[str]] = {}
    for path in layer_files(service, "service_layer"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {f"{node.module}.{a.name}" for a in node.names}
                imported.setdefault(path.stem, set()).update({node.module, *names})
            elif isinstance(node, ast.Import):
                imported.setdefault(path.stem, set()).update(a.name for a in node.names)
    ports = f"services.{service}.service_layer.ports"
    assert any(ports in names for names in imported.values())  # the walk saw the imports
    for module, names in imported.items():
        adapters = {n for n in names if n.startswith(f"services.{service}.adapters")}
        assert not adapters, (module, adapters)
        assert not {n for n in names if n.split(".")[0] in FORBIDDEN}, module
