"""The container image (no Docker engine here: its inputs and commands are checked) and the
systemd unit (``systemd-analyze verify``)."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.manifests import layout
from deploy.manifests.services import SERVICE_SPECS

ROOT = layout.REPO_ROOT
DOCKERFILE = (ROOT / "Dockerfile").read_text()
UNIT = ROOT / "deploy" / "systemd" / "selfcare@.service"


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_image_installs_exactly_pyprojects_dependencies() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [x for x in (ROOT / "deploy" / "requirements.txt").read_text().splitlines()
             if x and not x.startswith("#")]
    assert lines == deps
    assert all("==" in d for d in deps)
    runs = [rest for word, rest in _instructions() if word == "RUN"]
    assert any("pip install -r /tmp/requirements.txt" in r for r in runs)
    assert any("pip install --no-deps /src" in r for r in runs)  # the project adds nothing else
    assert ("COPY", "deploy/requirements.txt /tmp/requirements.txt") in _instructions()


def test_the_image_is_multi_stage_pinned_and_unprivileged() -> None:
    ins = _instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS build")
    (arg,) = [rest for word, rest in ins if word == "ARG" and rest.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11(\.\d+)?-slim-bookworm(@sha256:[0-9a-f]{64})?", arg)
    assert ("COPY", "--from=build /opt/venv /opt/venv") in ins
    users = [rest for word, rest in ins if word == "USER"]
    assert users == ["10001:10001"]
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[1] == "*" and {"!schemas/", "!services/", "!deploy/", "!pyproject.toml"} <= set(ignore)


def test_the_command_runs_the_chosen_service() -> None:
    (cmd,) = [json.loads(rest) for word, rest in _instructions() if word == "CMD"]
    assert cmd[:2] == ["/bin/sh", "-c"] and 'python -m "services.${SELFCARE_SERVICE}" worker' in cmd[2]


def _healthcheck_code() -> str:
    (hc,) = [rest for word, rest in _instructions() if word == "HEALTHCHECK"]
    argv = json.loads(hc[hc.index("CMD ") + 4:])
    assert argv[:2] == ["python", "-c"] and "/livez" in argv[2]
    return str(argv[2])


class _Livez(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/livez" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def livez_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Livez)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def test_the_healthcheck_asks_livez_on_the_services_port(livez_port: int) -> None:
    code = _healthcheck_code()
    for svc in SERVICE_SPECS:
        assert f"'{svc.name}':'{svc.port}'" in code
    env = {**os.environ, "SELFCARE_SERVICE": "notifier", "NOTIFIER_WEB_PORT": str(livez_port)}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=30).returncode == 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Livez)
    closed = server.server_address[1]
    server.server_close()
    env["NOTIFIER_WEB_PORT"] = str(closed)
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          timeout=30).returncode != 0


def test_each_services_worker_command_exists(tmp_path: Path) -> None:
    env = {**os.environ, "SELFCARE_ENV": "local", "SELFCARE_VAR_DIR": str(tmp_path / "var")}
    procs = {svc.name: subprocess.Popen(
        [sys.executable, "-m", f"services.{svc.name}", "worker", "--help"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for svc in SERVICE_SPECS}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, (name, out[-2000:])
        assert "Usage:" in out and "worker" in out, name
    bad = subprocess.run([sys.executable, "-m", "services.nosuch", "worker"], capture_output=True,
                         timeout=60, cwd=tmp_path)
    assert bad.returncode != 0


HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
             "CapabilityBoundingSet=\n", "ReadWritePaths=/var/lib/selfcare/%i", "Restart=on-failure",
             "EnvironmentFile=/etc/selfcare/%i.env", "ExecStart=/opt/selfcare-access/.venv/bin/python -m services.%i worker")


def test_the_unit_is_templated_and_hardened() -> None:
    text = UNIT.read_text()
    for line in HARDENING:
        assert line in text + "\n", line
    assert "User=selfcare" in text and "User=root" not in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("service", [s.name for s in SERVICE_SPECS])
def test_systemd_analyze_verifies_the_unit(service: str, tmp_path: Path) -> None:
    # verify needs ExecStart's program to exist: point it at this checkout's interpreter
    text = UNIT.read_text().replace("/opt/selfcare-access/.venv/bin/python", sys.executable)
    unit = tmp_path / f"selfcare@{service}.service"
    unit.write_text(text)
    ok = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stderr == "", ok.stderr
    broken = tmp_path / f"broken@{service}.service"
    broken.write_text(text.replace("Restart=on-failure", "Restart=sometimes"))
    bad = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "restart specifier" in bad.stderr  # the check can fail
