"""The notifier's domain and service layer stay free of the database and Kafka libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import services.notifier

ROOT = Path(services.notifier.__file__).parent
FORBIDDEN = ("sqlalchemy", "faust", "aiokafka")


def test_domain_and_service_layer_import_no_sqlalchemy_faust_or_aiokafka() -> None:
    modules = [f"services.notifier.{p.parent.name}.{p.stem}"
               for layer in ("domain", "service_layer") for p in sorted((ROOT / layer).glob("*.py"))]
    assert len(modules) > 10
    script = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
              f"print(','.join(sorted(n for n in {FORBIDDEN!r} if n in sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True, cwd=ROOT.parent.parent).stdout.strip()
    assert loaded == "", f"imported (directly or not): {loaded}"
