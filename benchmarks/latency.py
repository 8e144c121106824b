"""Request-to-gateway latency of the whole workflow (issue: p99 ≤ 200 ms at 20 requests/s).

    .venv/bin/python -m benchmarks.latency [--rate 20] [--duration 60] [--warmup 15]

Starts the three services (fresh topic prefix, SQLite under a temporary folder) with the local SMS
gateway, links one interactive-TV account per request (distinct mobiles), waits until recovery
has projected them all (its metrics), then sends "Get code" requests through the HTTP API at a
fixed rate and measures, at the gateway, the time from sending the HTTP request to the gateway
receiving the SMS. The first ``--warmup`` seconds of requests (same rate) warm the services and
the broker up — a freshly started JVM and fresh workers have a slower tail for their first
seconds — and are reported apart; the ``--duration`` seconds after them are the figure.
Bounded: rate × (warmup + duration) requests, loopback only.

For the measured requests it also prints where the time goes (the HTTP send, each stage's record
timestamp on the broker, the gateway's receipt: wall clocks of one machine), each service
process's CPU time per request, how many of the machine's CPUs were busy (and for the floor),
with ``--broker-var-dir`` the local broker's CPU (the warm-up, the measured requests, the floor
and the whole run), and the per-request times to ``requests.txt`` in the services'
folder (printed; ``--log-level INFO`` adds recovery's time per batch to its log there).

The requests come from many clients, as a portal's do:
each client has its own loopback source address (127.0.1.1, 127.0.1.2, …; Linux routes all of
127.0.0.0/8 to ``lo``) and sends at most ``CLIENT_REQUESTS`` requests, fewer than the default
per-client-IP limit (30 per 5 min). All settings are the defaults.

Then, in the same run, on the same broker and at the same rate, the floor
(``benchmarks.latency_floor``): three chained no-op faust agents with one argon2id hash at the
middle hop, timed from the record's send to the last agent. Both are printed with the ratio of
their p99s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from aiokafka import AIOKafkaProducer

from benchmarks.latency_floor import RESULTS
from deploy.broker import running_pids
from deploy.launch import TEST_HASH_PEPPER, TEST_SECRET_KEYS, Worker, free_port, produce, service_env
from deploy.local_stack import LocalStack
from deploy.topics import apply as apply_topics
from deploy.topics import remove as remove_topics
from schemas.topics import (
    ACCOUNT_CHANGED,
    CODE_ISSUED,
    CODE_REQUESTED,
    CONTRACT_LINKED,
    NOTIFICATION_STATUS,
    REQUESTS_BY_LOGIN,
)
from services.ops.kafka_read import scan


def mobile(i: int) -> str:
    return f"+7916{4000000 + i:07d}"


def link(i: int) -> bytes:
    return json.dumps({
        "event_id": str(uuid.uuid4()), "occurred_at": "2026-11-24T09:30:00Z",
        "contract_number": f"LAT-{i}", "personal_account": f"{900000000000 + i}",
        "tv_product": "interactive", "mobile_active": True,
        "subscriber": {"full_name": "Bench Subscriber", "mobile": mobile(i),
                       "passport": {"series": "0000", "number": f"{i:06d}"}},
    }).encode()


CLIENT_REQUESTS = 20  # per client address, under the default limit of 30 per client IP


def client_addresses(count: int) -> list[str]:
    """``count`` loopback source addresses: 127.0.1.1, 127.0.1.2, …"""
    if count > 250 * 250:
        raise ValueError("too many clients")
    return [f"127.0.{1 + k // 250}.{1 + k % 250}" for k in range(count)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def run(rate: float, duration: float, bootstrap: str, recovery_workers: int = 1,
              database_url: str | None = None, warmup: float = 0.0,
              log_level: str = "WARNING", broker: Sequence[int] = ()) -> list[float]:
    warm = int(rate * warmup)  # the first requests, at the same rate, reported apart
    n = warm + int(rate * duration)
    prefix = f"lat{uuid.uuid4().hex[:8]}."
    await apply_topics(bootstrap, prefix=prefix, replication_factor=1)
    var_dir = Path(tempfile.mkdtemp(prefix="latency-"))
    print(f"services' logs: {var_dir}")
    stack = LocalStack(
        bootstrap=bootstrap, var_dir=var_dir, topic_prefix=prefix,
        ports={"registration": free_port(), "recovery": free_port(), "notifier": free_port()},
        extra_env={"SECRET_KEYS": TEST_SECRET_KEYS, "HASH_PEPPER": TEST_HASH_PEPPER,
                   "LOG_LEVEL": log_level,
                   **({"RECOVERY_DATABASE_URL": database_url} if database_url else {})},
        replicas={"recovery": recovery_workers},
    )
    await asyncio.to_thread(stack.start)
    try:
        gateway = stack.sms_gateway
        assert gateway is not None
        await produce(bootstrap, prefix + CONTRACT_LINKED, [(f"LAT-{i}".encode(), link(i)) for i in range(n)])
        await projected(stack.url("recovery") + "/metrics", n)  # before any request is timed
        sent_at: dict[str, float] = {}
        sent_wall_ms: dict[str, float] = {}
        statuses: list[int] = []
        clients = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))
                   for address in client_addresses(-(-n // CLIENT_REQUESTS))]
        try:
            async def one(i: int) -> None:
                http = clients[i // CLIENT_REQUESTS]
                sent_at[mobile(i)] = time.monotonic()
                sent_wall_ms[mobile(i)] = time.time() * 1000
                async with http.post(stack.url("recovery") + "/api/v1/code-requests",
                                     json={"login": mobile(i), "channel": "sms"},
                                     headers=stack.api_headers()) as r:
                    statuses.append(r.status)

            start = time.monotonic()
            tasks = []
            cpu_before: dict[str, float] = {}
            machine_before = (0.0, 0.0)
            broker_warm = broker_measured = cpu_reading(broker)
            for i in range(n):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                if i == warm:
                    cpu_before, machine_before = cpu_seconds(stack), machine_busy()
                    broker_measured = cpu_reading(broker)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
        finally:
            for client in clients:
                await client.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = gateway.call(lambda s: {m.to: m.at for m in s.accepted.values()})
            if len(got) >= n:
                break
            await asyncio.sleep(0.2)
        cpu_used = {name: seconds - cpu_before.get(name, 0.0)
                    for name, seconds in cpu_seconds(stack).items()}
        late = {to: (got[to] - sent_at[to]) * 1000 for to in sent_at if to in got}
        latencies = [late[mobile(i)] for i in range(warm, n) if mobile(i) in late]
        print(f"requests sent: {n} at {rate}/s, HTTP 202: {statuses.count(202)}; the first {warm} "
              f"({warmup:.0f} s) warm the services and the broker up, the next {n - warm} "
              f"({duration:.0f} s) are measured")
        print(f"SMS received by the gateway: {len(late)} (missing {n - len(late)})")
        warming = [late[mobile(i)] for i in range(warm) if mobile(i) in late]
        if warming:
            print(f"warm-up latency ms:          p50 {pct(warming, 50):.1f}  "
                  f"p99 {pct(warming, 99):.1f}  max {max(warming):.1f}")
        if latencies:
            print(f"measured: request → gateway latency ms: {summary(latencies)}")
            print(f"target p99 ≤ 200 ms: {'met' if pct(latencies, 99) <= 200 else 'NOT met'}")
        print("CPU ms per measured request, by service process: " + ", ".join(
            f"{name} {used * 1000 / max(1, n - warm):.1f}" for name, used in cpu_used.items()))
        print_busy("the machine's CPUs while measured", machine_before,
                   " (every process, the broker and this one included)")
        if broker:
            print_cpu("the broker's CPU during the warm-up", broker, broker_warm, broker_measured)
            print_cpu("the broker's CPU while measured", broker, broker_measured,
                      cpu_reading(broker), per_request=n - warm)
        measured = {mobile(i) for i in range(warm, n)}
        await print_stages(bootstrap, prefix,
                           sent={m: t for m, t in sent_wall_ms.items() if m in measured},
                           at_gateway=gateway.call(lambda s: {m.client_ref: m.wall_ms
                                                              for m in s.accepted.values()}),
                           dump=var_dir / "requests.txt")
        return latencies
    finally:
        await asyncio.to_thread(stack.stop)
        await remove_topics(bootstrap, prefix=prefix)  # a broker keeping every run's topics slows


def process_cpu(pid: int) -> float:
    """CPU time (user + system, every thread) process ``pid`` has used so far (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(stack: LocalStack) -> dict[str, float]:
    """CPU time each service process has used so far."""
    used: dict[str, float] = {}
    for service in stack.processes:
        used[service.name] = used.get(service.name, 0.0) + process_cpu(service.proc.pid)
    return used


def cpu_reading(pids: Sequence[int]) -> tuple[float, float]:
    """(CPU seconds the processes ``pids`` have used so far, a monotonic clock in seconds)."""
    return sum(map(process_cpu, pids)), time.monotonic()


def print_cpu(what: str, pids: Sequence[int], before: tuple[float, float],
              after: tuple[float, float], per_request: int = 0) -> None:
    """How much of a CPU the processes ``pids`` used between two ``cpu_reading``s."""
    used, elapsed = after[0] - before[0], after[1] - before[1]
    if elapsed > 0:
        each = f", {used * 1000 / per_request:.1f} ms per request" if per_request else ""
        print(f"{what}: {used / elapsed:.2f} of a CPU ({used:.1f} s over {elapsed:.0f} s{each})")


def machine_busy() -> tuple[float, float]:
    """(busy, elapsed) CPU seconds of the whole machine so far, elapsed divided by the number of
    CPUs: their ratio over an interval is how many CPUs were busy on average (Linux)."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / tick, sum(ticks) / tick / (os.cpu_count() or 1)


def print_busy(what: str, before: tuple[float, float], more: str = "") -> None:
    """How many CPUs were busy on average since ``before`` (a ``machine_busy`` reading)."""
    busy, elapsed = (after - then for after, then in zip(machine_busy(), before, strict=True))
    if elapsed > 0:
        print(f"{what}: {busy / elapsed:.2f} of {os.cpu_count()} busy{more}")


async def projected(metrics_url: str, count: int, timeout_s: float = 300.0) -> None:
    """Waits until recovery has projected ``count`` accounts (its consumed AccountChanged
    records, from its metrics): requests timed while the projection still runs would measure
    that backlog, not the request path."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(metrics_url) as r:
                body = await r.text()
            done = sum(float(line.split()[-1]) for line in body.splitlines()
                       if line.startswith("recovery_events_consumed_total{")
                       and ACCOUNT_CHANGED in line and 'outcome="processed"' in line)
            if done >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"recovery projected {done:.0f} of {count} accounts")
            await asyncio.sleep(0.5)


def summary(latencies: list[float]) -> str:
    p50, p95, p99 = (pct(latencies, q) for q in (50, 95, 99))
    return (f"p50 {p50:.1f}  p95 {p95:.1f}  p99 {p99:.1f}  max {max(latencies):.1f}  "
            f"mean {statistics.mean(latencies):.1f}")


async def floor(rate: float, duration: float, bootstrap: str, warmup: float,
                broker: Sequence[int] = ()) -> list[float]:
    """The floor's latencies (ms) of the measured records: sent at ``rate`` for ``warmup`` +
    ``duration`` seconds, the first ``warmup`` seconds' records reported apart."""
    warm = int(rate * warmup)
    n = warm + int(rate * duration)
    prefix = f"floor{uuid.uuid4().hex[:8]}."
    await apply_topics(bootstrap, prefix=prefix, replication_factor=1)
    var_dir = Path(tempfile.mkdtemp(prefix="latency-floor-"))
    worker = Worker(module="benchmarks.latency_floor", log_path=var_dir / "floor.log", web_port=free_port(),
                    env=service_env(bootstrap=bootstrap, prefix=prefix, var_dir=var_dir,
                                    extra={"LOG_LEVEL": "WARNING"}))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        await asyncio.to_thread(worker.start, 90.0)
        await producer.start()
        start = time.monotonic()
        machine_before = (0.0, 0.0)
        broker_measured = cpu_reading(broker)
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            if i == warm:
                machine_before, broker_measured = machine_busy(), cpu_reading(broker)
            await producer.send(prefix + CODE_REQUESTED, key=mobile(i).encode(),
                                value=json.dumps({"i": i, "at": time.time()}).encode())
        await producer.flush()
        print_busy("the machine's CPUs while the floor was measured", machine_before)
        if broker:
            print_cpu("the broker's CPU while the floor was measured", broker, broker_measured,
                      cpu_reading(broker), per_request=n - warm)
        results = var_dir / RESULTS
        deadline = time.monotonic() + 60
        got: dict[int, float] = {}
        while time.monotonic() < deadline and len(got) < n:
            await asyncio.sleep(0.2)
            if results.exists():
                got = {int(i): float(ms) for i, ms in
                       (line.split() for line in results.read_text().splitlines() if line)}
        print(f"floor: {len(got)} of {n} records through the three agents (missing {n - len(got)})")
        warming = [got[i] for i in range(warm) if i in got]
        if warming:
            print(f"floor warm-up latency ms:    p50 {pct(warming, 50):.1f}  "
                  f"p99 {pct(warming, 99):.1f}  max {max(warming):.1f}")
        return [got[i] for i in range(warm, n) if i in got]
    finally:
        await producer.stop()
        await asyncio.to_thread(worker.stop)
        await remove_topics(bootstrap, prefix=prefix)


async def measure(args: argparse.Namespace) -> None:
    """The workflow, then the floor at the same rate on the same broker, then the ratio."""
    broker = running_pids(args.broker_var_dir) if args.broker_var_dir else []
    if args.broker_var_dir and not broker:
        raise SystemExit(f"no running broker under {args.broker_var_dir} (deploy.broker's --var-dir)")
    whole = cpu_reading(broker)
    workflow = await run(args.rate, args.duration, args.bootstrap, args.recovery_workers,
                         args.recovery_db, args.warmup, args.log_level, broker)
    base = await floor(args.rate, args.duration, args.bootstrap, args.warmup, broker)
    if broker:
        print_cpu("the broker's CPU over the whole run (the workflow and the floor, set-up "
                  "included)", broker, whole, cpu_reading(broker))
    if base:
        print(f"measured: floor (3 no-op agents + 1 argon2id hash) latency ms: {summary(base)}")
    if workflow and base:
        ratio = pct(workflow, 99) / pct(base, 99)
        print(f"p99 workflow / p99 floor: {ratio:.2f} (aim ≤ 2: {'met' if ratio <= 2 else 'NOT met'})")


async def print_stages(bootstrap: str, prefix: str, *, sent: dict[str, float],
                       at_gateway: dict[str, float], dump: Path | None = None) -> None:
    """Where the time of the measured requests goes: the HTTP request's send (``sent``, wall
    clock ms by login), the broker's record timestamp of each stage's output, and the gateway's
    wall clock on receipt (``at_gateway``, by ``client_ref``, which is the code id)."""
    at: dict[str, dict[str, float]] = {}
    code_of: dict[str, str] = {}
    login_of: dict[str, str] = {}
    stages = [(CODE_REQUESTED, "requested"), (REQUESTS_BY_LOGIN, "re-keyed"),
              (CODE_ISSUED, "issued"), (NOTIFICATION_STATUS, "status")]
    for topic, stage in stages:
        async for record in scan(bootstrap, [prefix + topic]):
            data = json.loads(record.value or b"{}")
            if stage in ("requested", "re-keyed"):
                key = data["event_id"]
                if stage == "requested":
                    login_of[key] = data["login"]
            elif stage == "issued":
                key = data["request_event_id"]
                code_of[data["code_id"]] = key
                if data["code_id"] in at_gateway:
                    at.setdefault(key, {})["gateway"] = at_gateway[data["code_id"]]
            else:
                key = code_of.get(data["code_id"], "")
            at.setdefault(key, {})[stage] = record.timestamp_ms
    for key, login in login_of.items():
        if login in sent:
            at.setdefault(key, {})["HTTP sent"] = sent[login]
    timed = sorted((t for t in at.values() if "HTTP sent" in t), key=lambda t: t["HTTP sent"])
    if dump is not None:
        names = ["HTTP sent", "requested", "re-keyed", "issued", "gateway", "status"]
        text = "".join(" ".join(f"{t.get(n, float('nan')):.1f}" for n in names) + "\n"
                       for t in timed)
        await asyncio.to_thread(dump.write_text, text)
        print(f"per-request wall-clock ms ({', '.join(names)}): {dump}")
    print(f"stage breakdown ms (the {len(timed)} measured requests; wall clocks of one machine):")
    for a, b in [("HTTP sent", "requested"), ("requested", "re-keyed"), ("re-keyed", "issued"),
                 ("issued", "gateway"), ("gateway", "status")]:
        gaps = [t[b] - t[a] for t in timed if a in t and b in t]
        if gaps:
            print(f"  {a:>9} → {b:<9}: p50 {pct(gaps, 50):6.1f}  p99 {pct(gaps, 99):6.1f}  "
                  f"max {max(gaps):6.1f}  (n={len(gaps)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=15.0,
                        help="seconds of requests before the measured ones (reported apart)")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--recovery-workers", type=int, default=1,
                        help="recovery worker processes sharing its consumer group (needs --recovery-db)")
    parser.add_argument("--recovery-db", default=None,
                        help="recovery's database URL, e.g. an empty PostgreSQL database")
    parser.add_argument("--broker-var-dir", default=None,
                        help="the local broker's folder (deploy.broker's --var-dir): prints its CPU")
    parser.add_argument("--log-level", default="WARNING",
                        help="the services' LOG_LEVEL (INFO logs recovery's time per batch)")
    args = parser.parse_args()
    if args.recovery_workers > 1 and not args.recovery_db:
        parser.error("several recovery workers share one database: give --recovery-db (PostgreSQL)")
    asyncio.run(measure(args))


if __name__ == "__main__":
    main()
