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


def _service_section() -> dict[str, list[str]]:
    section = UNIT.read_text().split("[Service]\n", 1)[1].split("\n[", 1)[0]
    out: dict[str, list[str]] = {}
    for line in section.splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def _systemd_docs() -> str:
    doc = (ROOT / "docs" / "scaling.md").read_text(encoding="utf-8")
    section = doc[doc.index("\n## systemd\n"):]
    return section.split("\n## ", 2)[1]


def test_each_instance_runs_as_a_user_of_its_own() -> None:
    """One user for every service let the notifier (which takes HTTP from the gateway) read the
    others' state; each instance (``%i``, the service) runs as its own user."""
    unit = _service_section()
    (user,) = unit["User"]
    names = [svc.name for svc in SERVICE_SPECS]
    users = {user.replace("%i", name) for name in names}
    assert "%i" in user and len(users) == len(names), user
    assert all("%i" in group for group in unit.get("Group", [])), unit["Group"]
    if unit.get("DynamicUser") != ["yes"]:  # static users: the docs create exactly these
        doc = _systemd_docs()
        assert f"for s in {' '.join(names)}; do" in doc and user.replace("%i", "$s") in doc
        assert re.search(r"useradd --system[^\n]*\\\n[^\n]*" + re.escape(user.replace("%i", "$s")), doc)


def _env_examples(doc: str) -> dict[str, dict[str, str]]:
    blocks = re.findall(r"^`/etc/selfcare/([\w-]+)\.env`:\n\n```ini\n(.*?)^```", doc, re.MULTILINE | re.DOTALL)
    return {name: dict(line.split("=", 1) for line in body.splitlines() if line.strip())
            for name, body in blocks}


def test_the_env_files_are_roots_alone_and_the_kafka_login_is_per_service() -> None:
    """systemd reads ``EnvironmentFile=`` as root, so the files need no group: a group-readable
    file would hand every service's keys to any service in that group. Each service's Kafka
    principal goes in its own file; in ``common.env`` every service would share one."""
    doc, unit = _systemd_docs(), UNIT.read_text()
    header = "\n".join(line for line in unit.splitlines() if line.startswith("#"))
    for text in (doc, header):
        assert "root:root 0600" in text
        # the old advice: root:selfcare 0640, "mode 0640, group selfcare"
        assert not re.search(r"root:selfcare\b|(-g|--group|group) selfcare\b|\bg\+r\b|\b0?6[1-7]0\b", text)
        assert "KAFKA_*" not in text  # "common.env: KAFKA_*, …" put every service's login there
        for line in text.splitlines():
            if ".env" in line:  # a mode or owner given to an env file: 0600, root's
                assert all(m in ("0600", "600") for m in re.findall(r"\b0?[0-7]{3}\b", line)), line
                assert "chown" not in line or "root:root" in line, line
    examples = _env_examples(doc)
    secret_keys = {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"} | {
        k for svc in SERVICE_SPECS for k in (*svc.secrets, *svc.optional_secrets)}
    assert examples["common"] and not secret_keys & set(examples["common"]), examples["common"]
    services = {name: env for name, env in examples.items() if name != "common"}
    assert services and set(services) <= {svc.name for svc in SERVICE_SPECS}
    for name, env in services.items():
        assert env["KAFKA_SASL_USERNAME"] == name and "KAFKA_SASL_PASSWORD" in env, name


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
