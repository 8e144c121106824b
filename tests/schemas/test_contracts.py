"""The contracts in ``schemas/`` agree with each other.

JSON Schemas (``schemas/json/``), pydantic models (``schemas/events.py``), examples
(``schemas/examples/``), the topic list (``schemas/topics.yaml``) and the AsyncAPI document
(``schemas/asyncapi.yaml``) describe the same wire: every example is valid for both the schema and
the model, bad records are refused by both, unknown fields are accepted by both, and every topic
has its channel with the right configuration and payload.
"""

from __future__ import annotations

import copy
import json
import re
import types
import typing
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from pydantic import BaseModel

import schemas
from schemas.events import EVENT_TYPES
from schemas.topics import topic_specs
from services.common.codec import DecodeError, decode

SCHEMAS_DIR = Path(schemas.__file__).parent
JSON_DIR = SCHEMAS_DIR / "json"
EXAMPLES_DIR = SCHEMAS_DIR / "examples"
ASYNCAPI = SCHEMAS_DIR / "asyncapi.yaml"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.json"))
# Events that carry what outside producers send (personal data in clear is expected there).
INBOUND = {"ContractLinked", "ContractTerminated", "ContractErased", "CodeRequested"}
# The contract requires the envelope; the models give both a default (see KNOWN_GAPS).
ENVELOPE = {"event_id", "occurred_at"}

Json = dict[str, Any]
Mutation = Callable[[Json], Any]


# --- helpers ---------------------------------------------------------------------------------


def event_of(path: Path) -> str:
    return path.name.split(".", 1)[0]


@cache
def schema_text(event: str) -> str:
    return (JSON_DIR / f"{event}.schema.json").read_text(encoding="utf-8")


def schema(event: str) -> Json:
    data: Json = json.loads(schema_text(event))
    return data


@cache
def validator(event: str) -> Draft202012Validator:
    return Draft202012Validator(schema(event), format_checker=Draft202012Validator.FORMAT_CHECKER)


def schema_errors(event: str, instance: Any) -> list[str]:
    return [error.message for error in validator(event).iter_errors(instance)]


def model_error(event: str, instance: Any) -> str | None:
    """None when the model, as the consumers decode it (``codec.decode``), accepts the JSON text
    of ``instance``, else the error."""
    raw = json.dumps(instance, ensure_ascii=False).encode("utf-8")
    try:
        decode(EVENT_TYPES[event], raw, max_bytes=10_000_000)
    except DecodeError as exc:
        return str(exc)
    return None


def load(path: Path) -> Json:
    data: Json = json.loads(path.read_text(encoding="utf-8"))
    return data


def example(name: str) -> Json:
    return load(EXAMPLES_DIR / f"{name}.json")


def at(doc: Json, path: str) -> tuple[Json, str]:
    """The parent object of a dotted path, and the last key."""
    *parents, last = path.split(".")
    for key in parents:
        doc = doc[key]
    return doc, last


def setting(path: str, value: Any) -> Mutation:
    def mutate(doc: Json) -> Json:
        parent, key = at(doc, path)
        parent[key] = value
        return doc

    return mutate


def dropping(path: str) -> Mutation:
    def mutate(doc: Json) -> Json:
        parent, key = at(doc, path)
        del parent[key]
        return doc

    return mutate


def leaf_paths(doc: Json, prefix: str = "") -> Iterator[str]:
    """Every key path of an example, nested objects included."""
    for key, value in doc.items():
        path = f"{prefix}{key}"
        yield path
        if isinstance(value, dict):
            yield from leaf_paths(value, path + ".")


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# --- (e), (f): the schema files themselves ---------------------------------------------------


def test_one_schema_file_per_event_type() -> None:
    files = {path.name.removesuffix(".schema.json") for path in JSON_DIR.glob("*.schema.json")}
    assert files == set(EVENT_TYPES)
    assert {path.name for path in JSON_DIR.iterdir()} == {f"{e}.schema.json" for e in files}


@pytest.mark.parametrize("event", sorted(EVENT_TYPES))
def test_schema_is_a_valid_draft_2020_12_schema(event: str) -> None:
    doc = schema(event)
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == f"https://schemas.selfcare-access.example/{event}.v1.json"
    assert doc["title"] == event
    assert doc["description"]
    objects = [node for node in walk(doc) if isinstance(node, dict) and node.get("type") == "object"]
    assert objects and all(node.get("additionalProperties") is True for node in objects)


# --- structural agreement with the pydantic models --------------------------------------------


def nested_model(annotation: Any) -> type[BaseModel] | None:
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else ()
    for candidate in (annotation, *args):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def resolve(root: Json, node: Json) -> Json:
    while "$ref" in node:
        ref = node["$ref"].removeprefix("#/").split("/")
        target: Json = root
        for part in ref:
            target = target[part]
        node = target
    return node


def compare(model: type[BaseModel], node: Json, root: Json, where: str) -> list[str]:
    problems: list[str] = []
    node = resolve(root, node)
    fields = model.model_fields
    if set(node["properties"]) != set(fields):
        problems.append(f"{where}: properties {sorted(node['properties'])} != {sorted(fields)}")
    required = {name for name, field in fields.items() if field.is_required()}
    if where == model.__name__ and model.__name__ in EVENT_TYPES:
        required |= ENVELOPE
    if set(node.get("required", [])) != required:
        problems.append(f"{where}: required {sorted(node.get('required', []))} != {sorted(required)}")
    for name, field in fields.items():
        prop = node["properties"].get(name, {})
        if not field.is_required() and field.default_factory is None:
            default = field.default.value if hasattr(field.default, "value") else field.default
            if prop.get("default", "<missing>") != default:
                problems.append(f"{where}.{name}: default {prop.get('default')!r} != {default!r}")
        child = nested_model(field.annotation)
        if child is not None:
            problems += compare(child, prop, root, f"{where}.{name}")
    return problems


@pytest.mark.parametrize("event", sorted(EVENT_TYPES))
def test_schema_properties_required_and_defaults_match_the_model(event: str) -> None:
    assert compare(EVENT_TYPES[event], schema(event), schema(event), event) == []


# --- (a): examples -----------------------------------------------------------------------------


def test_every_event_has_at_least_two_examples() -> None:
    names = [event_of(path) for path in EXAMPLES]
    assert set(names) == set(EVENT_TYPES)
    assert all(names.count(event) >= 2 for event in EVENT_TYPES)
    assert (EXAMPLES_DIR / "ContractLinked.design.json").exists()
    assert (EXAMPLES_DIR / "CodeRequested.design.json").exists()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_example_is_valid_and_round_trips(path: Path) -> None:
    event, raw = event_of(path), path.read_text(encoding="utf-8")
    assert schema_errors(event, json.loads(raw)) == []
    model = EVENT_TYPES[event].model_validate_json(raw)
    dumped = model.model_dump(mode="json")
    assert schema_errors(event, dumped) == []
    assert EVENT_TYPES[event].model_validate_json(json.dumps(dumped)) == model
    # what services/common/codec.py puts on the wire (None left out) is valid too
    assert schema_errors(event, json.loads(model.model_dump_json(exclude_none=True))) == []


PHONE = re.compile(r"\+?\d[\d ()-]*\d")
EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[a-z]+", re.IGNORECASE)


@pytest.mark.parametrize(
    "path", [p for p in EXAMPLES if event_of(p) not in INBOUND], ids=lambda path: path.stem
)
def test_outbound_examples_carry_no_personal_data_in_clear(path: Path) -> None:
    doc = load(path)
    doc.pop("support_phone", None)  # the operator's support number, not personal data
    for value in walk(doc):
        if isinstance(value, str) and not re.fullmatch(r"[0-9a-f-]{36}|[0-9a-f]{64}", value):
            assert not EMAIL.fullmatch(value) or "*****" in value, value
            digit_runs = [re.sub(r"\D", "", run) for run in PHONE.findall(value)]
            assert all(len(run) < 10 for run in digit_runs), value


# --- (b): bad records are refused by both ------------------------------------------------------

LINKED, REQUESTED = "ContractLinked.design", "CodeRequested.design"
ACCOUNT, ISSUED = "AccountChanged.interactive", "CodeIssued.sms"
REJECTED, STATUS = "CodeRejected.rate-limited", "NotificationStatus.sent"
NOTICE = "PasswordChanged.two-contacts"
CONTRACT_REJECTED, TERMINATED = "ContractRejected.invalid-mobile", "ContractTerminated.basic"
NAIVE = "2026-11-24T09:30:00"


def bad(name: str, mutate: Mutation, case: str) -> Any:
    return pytest.param(name, mutate, id=case)


BAD_CASES = [
    bad(LINKED, dropping("event_id"), "linked-missing-event_id"),
    bad(LINKED, dropping("occurred_at"), "linked-missing-occurred_at"),
    bad(REQUESTED, setting("client_ip", 167772161), "requested-client_ip-as-a-number"),
    bad(REQUESTED, setting("client_ip", "999.1.1.1"), "requested-client_ip-not-an-address"),
    bad(LINKED, dropping("contract_number"), "linked-missing-contract_number"),
    bad(LINKED, dropping("subscriber.passport"), "linked-missing-nested-passport"),
    bad(LINKED, dropping("subscriber.passport.number"), "linked-missing-passport-number"),
    bad(LINKED, setting("mobile_active", "yes"), "linked-mobile_active-yes"),
    bad(LINKED, setting("mobile_active", "true"), "linked-mobile_active-string-true"),
    bad(LINKED, setting("mobile_active", None), "linked-mobile_active-null"),
    bad(LINKED, setting("tv_product", "cable"), "linked-unknown-tv_product"),
    bad(LINKED, setting("tv_product", "IPTV"), "linked-tv_product-wrong-case"),
    bad(LINKED, setting("contract_number", "7" * 33), "linked-contract_number-too-long"),
    bad(LINKED, setting("personal_account", ""), "linked-personal_account-empty"),
    bad(LINKED, setting("subscriber.full_name", "И" * 201), "linked-full_name-too-long"),
    bad(LINKED, setting("subscriber.email", "e" * 255), "linked-email-too-long"),
    bad(LINKED, setting("subscriber.passport.series", "1" * 11), "linked-series-too-long"),
    bad(LINKED, setting("subscriber", "Иванов"), "linked-subscriber-not-an-object"),
    bad(LINKED, setting("operator_id", "o" * 65), "linked-operator_id-too-long"),
    bad(LINKED, setting("event_id", "not-a-uuid"), "linked-event_id-not-uuid"),
    bad(LINKED, setting("event_id", 12345), "linked-event_id-number"),
    bad(LINKED, setting("occurred_at", NAIVE), "linked-occurred_at-naive"),
    bad(LINKED, setting("occurred_at", "2026-11-24"), "linked-occurred_at-date-only"),
    bad(LINKED, setting("occurred_at", 1764000000), "linked-occurred_at-number"),
    bad(LINKED, setting("occurred_at", "yesterday"), "linked-occurred_at-text"),
    bad(LINKED, setting("occurred_at", "1764000000"), "occurred_at-unix-time-as-text"),
    bad(LINKED, setting("occurred_at", "2026-11-24 09:30:00Z"), "occurred_at-space-for-T"),
    bad(LINKED, setting("occurred_at", "2026-11-24T09:30Z"), "occurred_at-without-seconds"),
    bad(LINKED, setting("occurred_at", "2026-11-24T09:30:00+0300"), "occurred_at-offset-without-colon"),
    bad(LINKED, setting("event_id", "{7b0c1f0e-5a53-4a43-9a59-2b0d7f0c9a11}"), "event_id-braced"),
    bad(LINKED, setting("event_id", "urn:uuid:7b0c1f0e-5a53-4a43-9a59-2b0d7f0c9a11"), "event_id-urn"),
    bad(LINKED, setting("event_id", "7b0c1f0e5a534a439a592b0d7f0c9a11"), "event_id-bare-hex"),
    bad(TERMINATED, setting("contract_number", 771234567), "terminated-contract_number-number"),
    bad(TERMINATED, lambda doc: [doc], "terminated-array-not-object"),
    bad(CONTRACT_REJECTED, setting("reason", "duplicate"), "contract-rejected-unknown-reason"),
    bad(CONTRACT_REJECTED, setting("rejected_event_id", "12345"), "contract-rejected-bad-uuid"),
    bad(CONTRACT_REJECTED, dropping("reason"), "contract-rejected-missing-reason"),
    bad(REQUESTED, setting("login", "ivanov"), "requested-login-letters"),
    bad(REQUESTED, setting("login", "+7 (916) abc"), "requested-login-with-letters"),
    bad(REQUESTED, setting("login", "+() -"), "requested-login-without-digits"),
    bad(REQUESTED, setting("login", "1" * 65), "requested-login-too-long"),
    bad(REQUESTED, setting("login", 89161234567), "requested-login-number"),
    bad(REQUESTED, setting("channel", "push"), "requested-unknown-channel"),
    bad(REQUESTED, dropping("channel"), "requested-missing-channel"),
    bad(REQUESTED, setting("locale", "de"), "requested-unknown-locale"),
    bad(REQUESTED, setting("locale", None), "requested-locale-null"),
    bad(REQUESTED, setting("client_ip", "999.1.1.1"), "requested-client_ip-invalid"),
    bad(REQUESTED, setting("client_ip", "10.0.0.0/8"), "requested-client_ip-network"),
    bad(ACCOUNT, setting("version", 0), "account-version-zero"),
    bad(ACCOUNT, setting("version", "1"), "account-version-string"),
    bad(ACCOUNT, setting("version", True), "account-version-bool"),
    bad(ACCOUNT, setting("status", "deleted"), "account-unknown-status"),
    bad(ACCOUNT, setting("channels.sms", "yes"), "account-channels-sms-yes"),
    bad(ACCOUNT, dropping("channels.email"), "account-missing-channels-email"),
    bad(ACCOUNT, setting("login_keys.mobile", "AB" * 32), "account-hash-uppercase"),
    bad(ACCOUNT, setting("login_keys.mobile", "ab" * 31), "account-hash-too-short"),
    bad(ACCOUNT, setting("contacts.mobile_enc", "+79161234567"), "account-mobile-in-clear"),
    bad(ACCOUNT, setting("contacts.mobile_masked", None), "account-mobile_masked-null"),
    bad(ACCOUNT, setting("linked_at", NAIVE), "account-linked_at-naive"),
    bad(ACCOUNT, dropping("linked_at"), "account-missing-linked_at"),
    bad(ISSUED, setting("password_enc", "v1.XYZ.abc"), "issued-password_enc-bad-key-id"),
    bad(ISSUED, setting("password_enc", "Zx7kq2Pm"), "issued-password-in-clear"),
    bad(ISSUED, dropping("password_enc"), "issued-missing-password_enc"),
    bad(ISSUED, setting("destination_masked", ""), "issued-destination_masked-empty"),
    bad(ISSUED, setting("expires_at", NAIVE), "issued-expires_at-naive"),
    bad(REJECTED, setting("reason", "too_many"), "code-rejected-unknown-reason"),
    bad(REJECTED, setting("advice", "call_us"), "code-rejected-unknown-advice"),
    bad(REJECTED, setting("retry_after_s", 0), "code-rejected-retry_after_s-zero"),
    bad(REJECTED, setting("retry_after_s", "30"), "code-rejected-retry_after_s-string"),
    bad(REJECTED, setting("retry_after_s", 2.5), "code-rejected-retry_after_s-fraction"),
    bad(REJECTED, setting("support_phone", "8" * 65), "code-rejected-support_phone-too-long"),
    bad(STATUS, setting("attempts", -1), "status-attempts-negative"),
    bad(STATUS, setting("attempts", 1.5), "status-attempts-fraction"),
    bad(STATUS, setting("status", "queued"), "status-unknown-status"),
    bad(STATUS, setting("code_id", None), "status-code_id-null"),
    bad(NOTICE, setting("account_id", "{7b0c1f0e-5a53-4a43-9a59-2b0d7f0c9a11}"), "notice-account_id-braced"),
    bad(NOTICE, setting("code_id", "7b0c1f0e5a534a439a592b0d7f0c9a11"), "notice-code_id-bare-hex"),
    bad(NOTICE, setting("code_id", "urn:uuid:7b0c1f0e-5a53-4a43-9a59-2b0d7f0c9a11"), "notice-code_id-urn"),
    bad(REQUESTED, setting("client_ip", "fe80::1%eth0"), "requested-client_ip-with-a-zone"),
    bad(NOTICE, lambda doc: {**doc, "contacts": [doc["contacts"][1], doc["contacts"][1]]},
        "notice-two-contacts-of-one-channel"),
    bad(NOTICE, lambda doc: {**doc, "contacts": [doc["contacts"][0], doc["contacts"][1],
                                                 {**doc["contacts"][0], "destination_masked": "+7******0000"}]},
        "notice-two-mobiles"),
]


@pytest.mark.parametrize(("name", "mutate"), BAD_CASES)
def test_bad_record_is_refused_by_schema_and_model(name: str, mutate: Mutation) -> None:
    event, record = name.split(".", 1)[0], mutate(example(name))
    assert schema_errors(event, record), "the JSON Schema accepted it"
    assert model_error(event, record), "the pydantic model accepted it"


# Records the contract (DESIGN.md, the JSON Schemas) refuses but schemas/events.py accepts today.
# The schema side is checked here; the model side is a strict xfail, so fixing events.py turns it
# into a failure that asks for the entry to be moved to BAD_CASES.
KNOWN_GAPS: list[Any] = []


@pytest.mark.parametrize(("name", "mutate"), KNOWN_GAPS)
def test_known_gap_is_refused_by_the_schema(name: str, mutate: Mutation) -> None:
    assert schema_errors(name.split(".", 1)[0], mutate(example(name)))


@pytest.mark.xfail(strict=True, reason="schemas/events.py is looser than the contract here")
@pytest.mark.parametrize(("name", "mutate"), KNOWN_GAPS)
def test_known_gap_is_refused_by_the_model(name: str, mutate: Mutation) -> None:
    assert model_error(name.split(".", 1)[0], mutate(example(name)))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_null_and_absence_are_judged_alike(path: Path) -> None:
    """For every field of the example: null, and leaving it out, are accepted by both or neither."""
    event, original = event_of(path), load(path)
    disagreements: list[str] = []
    for field in leaf_paths(original):
        variants = {"null": setting(field, None)}
        if field not in ENVELOPE:
            variants["absent"] = dropping(field)
        for label, mutate in variants.items():
            record = mutate(copy.deepcopy(original))
            by_schema = not schema_errors(event, record)
            by_model = model_error(event, record) is None
            if by_schema != by_model:
                disagreements.append(f"{field} {label}: schema {by_schema}, model {by_model}")
    assert disagreements == []


# --- (c): tolerant reader ----------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_unknown_fields_are_accepted_by_both(path: Path) -> None:
    event, record = event_of(path), load(path)
    for node in [n for n in walk(record) if isinstance(n, dict)]:
        node["x_added_later"] = {"any": ["shape", 1, None]}
    assert schema_errors(event, record) == []
    assert model_error(event, record) is None
    dumped = EVENT_TYPES[event].model_validate_json(json.dumps(record)).model_dump(mode="json")
    assert "x_added_later" not in json.dumps(dumped)


# --- (d): the AsyncAPI document ----------------------------------------------------------------


@cache
def asyncapi() -> Json:
    """The parsed document (shared by the tests, which only read it)."""
    doc: Json = yaml.safe_load(ASYNCAPI.read_text(encoding="utf-8"))
    return doc


def pointer(doc: Json, ref: str) -> Any:
    """The node a local reference points to, following chained references."""
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if isinstance(node, dict) and str(node.get("$ref", "")).startswith("#/"):
        return pointer(doc, node["$ref"])
    return node


def channel_of(topic: str) -> tuple[str, Json]:
    found = [(k, v) for k, v in asyncapi()["channels"].items() if v["address"] == topic]
    assert len(found) == 1, f"{topic}: {len(found)} channels"
    return found[0]


def messages_of(channel: Json) -> list[Json]:
    doc = asyncapi()
    return [pointer(doc, ref["$ref"]) for ref in channel["messages"].values()]


TOPICS = topic_specs()
TOPIC_IDS = [spec.name for spec in TOPICS]


def test_asyncapi_header_and_server() -> None:
    doc = asyncapi()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "selfcare-access"
    assert doc["info"]["version"] and doc["info"]["description"]
    assert doc["servers"]["local"]["host"] == "127.0.0.1:9092"
    assert doc["servers"]["local"]["protocol"] == "kafka"


def test_asyncapi_channels_are_exactly_the_topics() -> None:
    addresses = [channel["address"] for channel in asyncapi()["channels"].values()]
    assert sorted(addresses) == sorted(TOPIC_IDS)
    assert len(set(addresses)) == len(addresses)


@pytest.mark.parametrize("spec", TOPICS, ids=TOPIC_IDS)
def test_asyncapi_channel_matches_topics_yaml(spec: Any) -> None:
    _, channel = channel_of(spec.name)
    kafka = channel["bindings"]["kafka"]
    assert kafka["topic"] == spec.name
    assert kafka["partitions"] == spec.partitions
    if spec.replication_factor > 0:
        assert kafka["replicas"] == spec.replication_factor
    # every config the topics are created with (deploy.topics applies spec.configs())
    assert {key: ",".join(value) if isinstance(value, list) else str(value)
            for key, value in kafka["topicConfiguration"].items()} == spec.configs()
    messages = messages_of(channel)
    assert len(messages) == 1
    message = messages[0]
    assert message["payload"] == {"$ref": f"./json/{spec.event}.schema.json"}
    assert (SCHEMAS_DIR / message["payload"]["$ref"]).is_file()
    assert message["contentType"] == "application/json"
    assert message["bindings"]["kafka"]["key"]["description"]


@pytest.mark.parametrize("spec", TOPICS, ids=TOPIC_IDS)
def test_asyncapi_headers_ce_everywhere_and_dlq_on_dead_letters(spec: Any) -> None:
    doc = asyncapi()
    (message,) = messages_of(channel_of(spec.name)[1])
    headers = pointer(doc, message["headers"]["$ref"])
    ce = pointer(doc, "#/components/schemas/CloudEventsHeaders")
    assert set(ce["properties"]) == {
        "ce_specversion",
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_time",
        "content-type",
    }
    assert "required" not in ce  # outside producers need not set them
    dlq = {
        "dlq_original_topic",
        "dlq_original_partition",
        "dlq_original_offset",
        "dlq_error_class",
        "dlq_error_message",
        "dlq_service",
        "dlq_failed_at",
    }
    if spec.name.endswith(".dlq"):
        assert set(headers["required"]) == dlq
        # set only on a value cut to DLQ_VALUE_MAX_BYTES, original headers left out
        assert set(headers["properties"]) == dlq | {"dlq_value_truncated", "dlq_key_truncated",
                                                    "dlq_headers_dropped"}
        assert {"$ref": "#/components/schemas/CloudEventsHeaders"} in headers["allOf"]
    else:
        assert headers is ce


@pytest.mark.parametrize("spec", TOPICS, ids=TOPIC_IDS)
def test_asyncapi_operations_match_producers_and_consumers(spec: Any) -> None:
    doc = asyncapi()
    channel_id, channel = channel_of(spec.name)
    found = set()
    for op in doc["operations"].values():
        if op["channel"]["$ref"] == f"#/channels/{channel_id}":
            (service,) = [tag["name"] for tag in op["tags"]]
            found.add((service, op["action"]))
            assert [pointer(doc, m["$ref"]) for m in op["messages"]] == messages_of(channel)
    expected = {(p, "send") for p in spec.producers} | {(c, "receive") for c in spec.consumers}
    assert found == expected


def test_asyncapi_every_reference_resolves() -> None:
    doc = asyncapi()
    refs = [node["$ref"] for node in walk(doc) if isinstance(node, dict) and "$ref" in node]
    assert refs
    for ref in refs:
        if ref.startswith("#/"):
            pointer(doc, ref)
        else:
            assert (SCHEMAS_DIR / ref).is_file(), ref


def test_asyncapi_names_the_consumer_groups_of_the_outside_readers() -> None:
    from deploy.access import grants, outside_group_prefix

    doc = asyncapi()
    readers = {name for name, g in grants().items() if g.group_prefixes and name != "ops"}
    assert readers == {"crm", "portal"}
    checked = set()
    for op in doc["operations"].values():
        (who,) = [tag["name"] for tag in op["tags"]]
        if who in readers and op["action"] == "receive":
            assert op["bindings"]["kafka"]["groupId"]["pattern"] == "^" + outside_group_prefix(who)
            checked.add(who)
    assert checked == readers  # each outside reader has a receive operation that was checked


def test_the_topic_table_of_docs_operations_lists_every_topic() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
    section = doc.split("\n## Topics\n", 1)[1].split("\n#", 1)[0]
    found = re.findall(r"^\| `([a-z0-9.-]+)`( \(\+ `\.dlq`\))? \|", section, re.MULTILINE)
    rows = dict(found)
    assert len(rows) == len(found)
    names = {spec.name for spec in TOPICS}
    assert set(rows) == {n for n in names if not n.endswith(".dlq")}
    for name, dlq in rows.items():
        assert bool(dlq) == (name + ".dlq" in names), name
