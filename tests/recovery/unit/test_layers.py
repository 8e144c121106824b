"""The service layer depends on ports: no database, Kafka or faust library is imported under
it, directly or through what it imports, and no adapter but the metrics."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import services.recovery.service_layer as service_layer

LAYER = Path(service_layer.__file__).parent
MODULES = sorted(f"services.recovery.service_layer.{p.stem}" for p in LAYER.glob("*.py")
                 if p.stem != "__init__")
FORBIDDEN = ("sqlalchemy", "faust", "aiokafka", "psycopg", "mode")


def test_importing_the_service_layer_loads_no_database_or_kafka_library() -> None:
    assert "services.recovery.service_layer.codes" in MODULES
    script = (f"import sys, json\nfor m in {MODULES!r}: __import__(m)\n"
              "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules})))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", script], check=True,
                                           capture_output=True, text=True).stdout))
    assert "services" in loaded
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


def test_the_service_layer_imports_no_adapter_but_the_metrics() -> None:
    imported: dict[str, set[str]] = {}
    for path in LAYER.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = {f"{node.module}.{a.name}" for a in node.names}
                imported.setdefault(path.stem, set()).update({node.module, *names})
            elif isinstance(node, ast.Import):
                imported.setdefault(path.stem, set()).update(a.name for a in node.names)
    assert "services.recovery.service_layer.ports" in imported["codes"]
    for module, names in imported.items():
        adapters = {n for n in names if n.startswith("services.recovery.adapters")
                    and not n.startswith("services.recovery.adapters.metrics")}
        assert not adapters, (module, adapters)
        assert not {n for n in names if n.split(".")[0] in FORBIDDEN}, module
