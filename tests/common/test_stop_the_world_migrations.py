"""Revisions that drop or alter an existing table or column cannot be rolled out while the old
release runs: every worker migrates at start, so the first new pod would take away what the old
pods still use. Each such revision is named in ``STOP_THE_WORLD``
(``services/common/migrations.py``) and in docs/scaling.md's "Upgrades that drop or alter", which
tells operators to stop the service, run ``python -m services.<name> migrate`` and start it again.

Found by reading each revision's ``upgrade()`` (AST, nothing imported or run): a call of
``drop_table``, ``drop_column`` or ``alter_column`` on any object (``op`` or a batch operation),
in ``upgrade()`` or in a function of the module it calls, and raw SQL that drops a table or drops,
alters or renames in an ``ALTER TABLE``. ``downgrade()`` is not looked at.
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

from schemas.topics import SERVICES
from services.common.migrations import STOP_THE_WORLD

ROOT = Path(__file__).resolve().parents[2]
DESTRUCTIVE_OPS = frozenset({"drop_table", "drop_column", "alter_column"})
DESTRUCTIVE_SQL = re.compile(r"\bDROP\s+TABLE\b|\bALTER\s+TABLE\b[^;]*\b(DROP|ALTER|RENAME)\b",
                             re.IGNORECASE | re.DOTALL)


def _revision(tree: ast.Module) -> str:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "revision" for t in node.targets):
            assert isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
            return node.value.value
    raise AssertionError("no module-level `revision = \"...\"`")


def destructive_calls(source: str) -> list[str]:
    """What ``upgrade()`` (and the module's functions it calls) drops or alters: op names, or
    ``sql`` for raw SQL."""
    tree = ast.parse(source)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    found: list[str] = []
    todo, seen = ["upgrade"], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        for node in ast.walk(functions[name]):
            if isinstance(node, ast.Call):
                if isinstance(node.func, ast.Attribute) and node.func.attr in DESTRUCTIVE_OPS:
                    found.append(node.func.attr)
                elif isinstance(node.func, ast.Name):
                    todo.append(node.func.id)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and DESTRUCTIVE_SQL.search(node.value):
                found.append("sql")
    return found


def revision_files(service: str) -> list[Path]:
    return sorted((ROOT / "services" / service / "migrations" / "versions").glob("*.py"))


def stop_the_world_revisions(service: str) -> set[str]:
    out = set()
    for path in revision_files(service):
        source = path.read_text(encoding="utf-8")
        if destructive_calls(source):
            out.add(_revision(ast.parse(source)))
    return out


def documented() -> set[tuple[str, str]]:
    """The rows of docs/scaling.md's table under "Upgrades that drop or alter"."""
    doc = (ROOT / "docs" / "scaling.md").read_text(encoding="utf-8")
    section = re.search(r"^### Upgrades that drop or alter\n(.*?)^#", doc, re.MULTILINE | re.DOTALL)
    assert section, "docs/scaling.md has no section \"Upgrades that drop or alter\""
    return set(re.findall(r"^\| (\w+) \| `(\w+)` \|", section.group(1), re.MULTILINE))


def test_every_service_with_revisions_is_in_the_constant() -> None:
    assert set(STOP_THE_WORLD) == set(SERVICES)
    assert {p.parts[-4] for p in (ROOT / "services").glob("*/migrations/versions/*.py")} == set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_each_revision_that_drops_or_alters_is_named_in_stop_the_world(service: str) -> None:
    assert revision_files(service)
    found = stop_the_world_revisions(service)
    assert found - STOP_THE_WORLD[service] == set(), (
        f"{service}: these revisions drop or alter what the previous release uses; add them to "
        "STOP_THE_WORLD and to docs/scaling.md, \"Upgrades that drop or alter\" (better: add now, "
        "drop a release later)")
    assert STOP_THE_WORLD[service] - found == set(), f"{service}: named, but drops or alters nothing"


def test_the_docs_list_the_same_revisions_and_the_command() -> None:
    assert documented() == {(s, r) for s, revs in STOP_THE_WORLD.items() for r in revs}
    doc = (ROOT / "docs" / "scaling.md").read_text(encoding="utf-8")
    assert "python -m services.<service> migrate" in doc
    for service in SERVICES:
        main = (ROOT / "services" / service / "__main__.py").read_text(encoding="utf-8")
        assert f"python -m services.{service} migrate" in main  # its `migrate` (services.common.service.run)


WALKED = textwrap.dedent('''
    revision = "0009"

    def _retire() -> None:
        op.drop_column("accounts", "old")

    def upgrade() -> None:
        op.add_column("accounts", sa.Column("new", sa.Integer()))
        {body}

    def downgrade() -> None:
        op.drop_table("everything")
''')


@pytest.mark.parametrize(("body", "expected"), [
    ("pass", []),
    ("op.drop_table('counters')", ["drop_table"]),
    ("with op.batch_alter_table('accounts') as batch:\n        batch.alter_column('x', nullable=False)",
     ["alter_column"]),
    ("_retire()", ["drop_column"]),
    ("op.execute(sa.text('DROP TABLE counters'))", ["sql"]),
    ("op.execute('ALTER TABLE accounts DROP COLUMN old')", ["sql"]),
    ("op.execute('ALTER TABLE accounts ADD COLUMN new INTEGER')", []),
    ("op.create_index('ix', 'accounts', ['new'])", []),
])
def test_the_walk_finds_what_upgrade_drops_or_alters(body: str, expected: list[str]) -> None:
    source = WALKED.format(body=body)
    assert destructive_calls(source) == expected
    assert _revision(ast.parse(source)) == "0009"
