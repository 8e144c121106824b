"""schemas/openapi.yaml against the real HTTP servers of a recovery and a notifier worker.

schemathesis generates requests from the document — valid ones and, in negative mode, ones
that break it — and checks every answer: no 5xx, a status the document lists, a body of the
documented schema, a documented content type, 401 when the token is left out. hypothesis then
posts arbitrary bodies (any bytes, any JSON) to the same servers. Examples are bounded so the
module stays well under a minute.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.notifier.integration.stack import Stack
from tests.support.workers import TEST_RECOVERY_API_TOKEN, TEST_SMS_STATUS_TOKEN, Worker

DOCUMENT = Path(__file__).resolve().parents[2] / "schemas" / "openapi.yaml"
SCHEMA = schemathesis.openapi.from_dict(yaml.safe_load(DOCUMENT.read_text()))
OPERATIONS = {op.path: op for op in (result.ok() for result in SCHEMA.get_all_operations())}
EXAMPLES = 40
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


def documented(path: str) -> set[int]:
    raw = yaml.safe_load(DOCUMENT.read_text())
    return {int(code) for code in raw["paths"][path]["post"]["responses"]}


def target(path: str, recovery: Worker, notifier: Stack) -> tuple[str, str]:
    if path == "/api/v1/sms-status":
        return notifier.worker.base_url, TEST_SMS_STATUS_TOKEN
    return recovery.base_url, TEST_RECOVERY_API_TOKEN


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("path", sorted(OPERATIONS))
def test_schemathesis(path: str, mode: GenerationMode, recovery: Worker, notifier: Stack) -> None:
    base_url, token = target(path, recovery, notifier)
    seen: set[int] = set()
    session = requests.Session()

    @FUZZ
    @given(case=OPERATIONS[path].as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        response = case.call_and_validate(base_url=base_url, session=session,
                                          headers={"Authorization": f"Bearer {token}"}, timeout=5)
        seen.add(response.status_code)

    run()
    assert seen and seen <= documented(path) - {500}, seen
    if mode is GenerationMode.POSITIVE:  # valid requests are not refused as malformed
        assert 400 not in seen, seen
    else:  # schemathesis's negative_data_rejection check has vetted every 2xx above
        assert seen & {400, 401}, seen


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({}, optional={
        "login": json_values, "password": json_values, "channel": json_values,
        "message_id": json_values, "status": json_values, "client_ip": json_values,
    }).map(lambda v: json.dumps(v).encode()),
)


@pytest.mark.parametrize("path", sorted(OPERATIONS))
def test_hypothesis_bodies(path: str, recovery: Worker, notifier: Stack) -> None:
    base_url, token = target(path, recovery, notifier)
    allowed = documented(path) - {500}
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    @FUZZ
    @given(body=bodies)
    def run(body: bytes) -> None:
        response = session.post(base_url + path, data=body, headers=headers, timeout=5)
        assert response.status_code in allowed, (body, response.status_code, response.text)
        assert "error" in response.json() or response.status_code < 300

    run()
