"""``selfcare-ops``: what ops need to answer "what happened to this subscriber's code?".

    selfcare-ops trace <event id | code id>
    selfcare-ops tail <topic> [--from-beginning]
    selfcare-ops dlq list [<dlq topic>]
    selfcare-ops dlq show <dlq topic> <offset> [--raw]
    selfcare-ops dlq replay <dlq topic> <offset> [--force]
    selfcare-ops topics apply|describe
    selfcare-ops lag [--group G ...] [--max-lag N]
    selfcare-ops keys reseal
    selfcare-ops login "<login as typed>" [--json]
    selfcare-ops identify --contract <number> | --mobile <mobile> --passport "<series> <number>"
                          --name "<full name>" --operator <id>

Everything printed is masked; ``dlq show --raw`` prints a dead letter's bytes (inbound DLQs
may hold personal data: ops only).
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime
from typing import Annotated

import typer

from deploy import topics as topic_admin
from services.common.errors import ConfigError
from services.common.faust_private import set_auto_offset_reset
from services.common.kafka_config import KafkaSettings
from services.ops import dlq as dead_letters
from services.ops import lag as group_lag
from services.ops import support
from services.ops.kafka_read import NotFound, consumer, header_text, require, to_record
from services.ops.present import describe_value
from services.ops.trace import as_json, trace

app = typer.Typer(
    no_args_is_help=True, add_completion=False,
    help="Trace code requests, tail topics, inspect and replay dead letters, apply topics. "
    "Everything printed is masked.",
)
dlq_app = typer.Typer(no_args_is_help=True, help="Dead-letter topics: list, show, replay.")
topics_app = typer.Typer(no_args_is_help=True, help="The declarative topic list on the broker.")
app.add_typer(dlq_app, name="dlq")
app.add_typer(topics_app, name="topics")
support.install(app)  # keys reseal, login, identify: through the services' ops routes


def _bootstrap() -> KafkaSettings:
    """The cluster and how to connect to it: ``KAFKA_BOOTSTRAP_SERVERS`` and ``KAFKA_*``, with the
    services' defaults (DESIGN.md: ``localhost:9092``, "used by every service and by selfcare-ops")."""
    try:
        return KafkaSettings.from_env(os.environ)
    except ConfigError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        raise typer.Exit(2) from None


def _prefix() -> str:
    return os.environ.get("TOPIC_PREFIX", "")


def _topic(name: str) -> str:
    """A topic as typed, with or without ``TOPIC_PREFIX``, as it is named on the cluster."""
    return _prefix() + name.removeprefix(_prefix())


def _not_found(exc: NotFound) -> typer.Exit:
    typer.echo(str(exc), err=True)
    return typer.Exit(2)


@app.command("trace")
def trace_cmd(ident: str, as_json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The timeline of one code request, by the request's event id or the code id."""
    steps = asyncio.run(trace(_bootstrap(), ident, _prefix()))
    if not steps:
        typer.echo(f"nothing found for {ident}", err=True)
        raise typer.Exit(1)
    typer.echo(as_json(steps) if as_json_out else "\n".join(s.line() for s in steps))


@app.command("tail")
def tail_cmd(
    topic: str,
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    limit: Annotated[int, typer.Option(help="stop after this many records (0: never)")] = 0,
    idle_exit_s: Annotated[float, typer.Option(help="stop after this long without records (0: never)")] = 0,
) -> None:
    """Pretty-print a topic live, masked."""
    try:
        asyncio.run(_tail(_topic(topic), from_beginning, limit, idle_exit_s))
    except NotFound as exc:
        raise _not_found(exc) from None


async def _tail(topic: str, from_beginning: bool, limit: int, idle_exit_s: float) -> None:
    c = consumer(_bootstrap())
    if not from_beginning:
        set_auto_offset_reset(c, "latest")
    await c.start()
    shown = 0
    idle_since = asyncio.get_running_loop().time()
    try:
        await require(c, topic)
        c.subscribe([topic])
        while True:
            batch = await c.getmany(timeout_ms=500)
            now = asyncio.get_running_loop().time()
            for msgs in batch.values():
                for m in msgs:
                    idle_since = now
                    r = to_record(m)
                    when = datetime.fromtimestamp(r.timestamp_ms / 1000, UTC).isoformat(timespec="seconds")
                    body = describe_value(topic, r.value, _prefix())
                    extra = {k: v for k, v in r.headers.items() if k.startswith("dlq_")}
                    typer.echo(f"{when} p{r.partition}@{r.offset} "
                               f"{json.dumps({**body, **extra}, ensure_ascii=False)}")
                    shown += 1
                    if limit and shown >= limit:
                        return
            if idle_exit_s and now - idle_since > idle_exit_s:
                return
    finally:
        await c.stop()


@dlq_app.command("list")
def dlq_list(topic: Annotated[str | None, typer.Argument()] = None) -> None:
    """Without a topic: every DLQ and how many records it holds. With one: its records."""
    if topic is None:
        for name, count in asyncio.run(dead_letters.counts(_bootstrap(), _prefix())).items():
            typer.echo(f"{name:55} {count}")
        return
    try:
        found = asyncio.run(dead_letters.records(_bootstrap(), _topic(topic)))
    except NotFound as exc:
        raise _not_found(exc) from None
    for r in found:
        h = r.headers
        typer.echo(
            f"p{r.partition}@{r.offset} {h.get('dlq_error_class', '?'):18} "
            f"from {h.get('dlq_original_topic')}:{h.get('dlq_original_partition')}:"
            f"{h.get('dlq_original_offset')}  {h.get('dlq_error_message', '')}"
        )


@dlq_app.command("show")
def dlq_show(topic: str, offset: int, partition: int = 0,
             raw: Annotated[bool, typer.Option("--raw", help="print the original bytes")] = False) -> None:
    """One dead letter: its headers, and its payload masked (or raw with --raw)."""
    name = _topic(topic)
    try:
        r = asyncio.run(dead_letters.fetch_one(_bootstrap(), name, offset, partition))
    except NotFound as exc:
        raise _not_found(exc) from None
    if r is None:
        typer.echo(f"no record at {name}:{partition}:{offset}", err=True)
        raise typer.Exit(1)
    for key, value in r.raw_headers:  # every header in order: a name may repeat
        typer.echo(f"{key}: {header_text(value)}")
    original = r.headers.get("dlq_original_topic", "")
    if raw:
        typer.echo((r.value or b"").decode("utf-8", "backslashreplace"))
    else:
        typer.echo(json.dumps(describe_value(original, r.value, _prefix()), ensure_ascii=False))


@dlq_app.command("replay")
def dlq_replay(topic: str, offset: int, partition: int = 0,
               force: Annotated[bool, typer.Option("--force")] = False) -> None:
    """Send a dead letter back to its original topic (once; --force to send it again)."""
    try:
        where = asyncio.run(dead_letters.replay(_bootstrap(), _topic(topic), offset, partition=partition,
                                                force=force, prefix=_prefix()))
    except dead_letters.ReplayRefused as exc:
        typer.echo(f"refused: {exc}", err=True)
        raise typer.Exit(2) from None
    except NotFound as exc:
        raise _not_found(exc) from None
    typer.echo(f"replayed to {where}")


@topics_app.command("apply")
def topics_apply() -> None:
    """Create or update every topic of the declarative list (idempotent)."""
    changes = asyncio.run(topic_admin.apply(_bootstrap(), prefix=_prefix()))
    typer.echo("\n".join(changes) if changes else "topics up to date: nothing changed")


@topics_app.command("describe")
def topics_describe() -> None:
    """What the broker has for each topic of the list."""
    asyncio.run(topic_admin._describe_main(_bootstrap(), _prefix()))


@app.command("lag")
def lag_cmd(
    group: Annotated[list[str] | None, typer.Option(
        "--group", help="a consumer group (repeatable); default: every selfcare-* group but ops'")] = None,
    max_lag: Annotated[int | None, typer.Option(
        help="exit 1 when any partition is more than this many records behind, "
        "or a group's lag is unknown")] = None,
) -> None:
    """Records behind per consumer group and partition (end offset minus committed offset; a
    partition never committed on counts from its first retained offset)."""
    groups = group or [
        g for g in asyncio.run(group_lag.groups_with_prefix(_bootstrap(), f"{_prefix()}selfcare-"))
        if not g.startswith(f"{_prefix()}selfcare-ops")
    ]
    rows = asyncio.run(group_lag.lag(_bootstrap(), groups))
    if not rows:
        typer.echo("no committed offsets for " + (", ".join(groups) or "any selfcare-* group"), err=True)
        raise typer.Exit(1)
    typer.echo(group_lag.HEADER)
    for row in rows:
        typer.echo(row.line())
    unknown = [name for name in groups if not any(r.group == name for r in rows)]
    for name in groups:
        if name in unknown:
            typer.echo(f"{name}: no committed offsets and no members: its topics are unknown")
        else:
            typer.echo(f"{name}: {sum(r.lag for r in rows if r.group == name)} records behind")
    if max_lag is not None and (unknown or any(r.lag > max_lag for r in rows)):
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
