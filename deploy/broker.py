"""A local Apache Kafka broker (KRaft mode) for tests and development.

The broker's jars come from Maven Central (``deploy/kafka/pom.xml``) into a cache outside the
repository; every node runs as a detached ``java`` process with its files under
``<var-dir>/kafka/node-<i>/``.

CLI::

    python -m deploy.broker fetch                 # fetch the jars into the cache (once)
    python -m deploy.broker start [--nodes 1|3]   # start, wait until it answers, print bootstrap
    python -m deploy.broker start --secure        # the same with SASL_SSL, SCRAM users and ACLs
    python -m deploy.broker acls --prefix P       # (secure) ACLs for the topics under prefix P
    python -m deploy.broker env --principal NAME  # (secure) the KAFKA_* settings of a principal
    python -m deploy.broker status                # exit 0 when every node answers, 3 otherwise
    python -m deploy.broker stop                  # SIGTERM, 30 s, SIGKILL
    python -m deploy.broker reset                 # stop + delete <var-dir>/kafka

Common options: ``--nodes N`` (1), ``--base-port P`` (9092; node i listens on P + 2*(i-1) for
clients and the next port for the controller), ``--var-dir DIR`` (``<repo>/var``).

A secured cluster (``--secure``, see :mod:`deploy.kafka_security`) has one ``SASL_SSL``
listener per node on its client port (SCRAM-SHA-512 over TLS) and a mutual-TLS controller
listener; a CA and the broker certificate are made with ``openssl``, one SCRAM user per
principal of ``deploy.access`` plus ``admin`` is created when the storage is formatted, and the
ACLs come from ``deploy.access.grants()``. Passwords are in ``<var-dir>/kafka/credentials.json``.

Messages go to stderr; ``start`` prints only the bootstrap string on stdout, so a shell can do
``KAFKA_BOOTSTRAP_SERVERS=$(python -m deploy.broker start)``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from deploy import kafka_security as sec

KAFKA_VERSION = "3.9.1"
SCALA_VERSION = "2.13"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = Path(__file__).resolve().parent
POM = DEPLOY_DIR / "kafka" / "pom.xml"
LOG4J = DEPLOY_DIR / "kafka" / "log4j.properties"
DEFAULT_VAR_DIR = REPO_ROOT / "var"
DEFAULT_BASE_PORT = 9092
HOST = "127.0.0.1"

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
HEAP = ("-Xmx1g", "-Xms256m")
# The JIT's first tier only (C1). On a 2-core machine under benchmarks.latency's load, a fresh
# broker with the default tiered JIT averaged 0.42 of a CPU over its first 40 s and 0.20 over the
# next 46 s; with C1 alone 0.21–0.23 and 0.17–0.18. Warm, C1's code costs a little more (21–27
# CPU s a run against 15–18), about even over three runs on one broker (docs/performance.md).
JIT = ("-XX:TieredStopAtLevel=1",)

# Popen objects of the nodes this Python process launched: kept so they can be reaped (no
# zombies) when a long-lived caller (e.g. a pytest session) stops them again.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

T = TypeVar("T")


class BrokerError(RuntimeError):
    """The broker could not be fetched, started or stopped."""


def _say(msg: str) -> None:
    print(f"[broker] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- jars


def cache_dir() -> Path:
    """``${SELFCARE_CACHE:-~/.cache/selfcare-access}/kafka-<version>``."""
    root = os.environ.get("SELFCARE_CACHE") or str(Path.home() / ".cache" / "selfcare-access")
    return Path(root).expanduser() / f"kafka-{KAFKA_VERSION}"


def _cache_complete(path: Path) -> bool:
    return (path / f"kafka_{SCALA_VERSION}-{KAFKA_VERSION}.jar").is_file() and (
        path / "reload4j-1.2.25.jar"
    ).is_file()


def fetch_jars() -> bool:
    """Fetch the broker's jars with Maven into :func:`cache_dir` unless they are there.

    Maven writes into a temporary sibling folder that is renamed into place only once it is
    complete, so an interrupted fetch leaves no half cache. Returns True if it downloaded.
    """
    target = cache_dir()
    if _cache_complete(target):
        _say(f"Kafka {KAFKA_VERSION} jars already cached in {target} (nothing fetched)")
        return False
    if target.exists():
        _say(f"incomplete cache {target}: removing it")
        shutil.rmtree(target)
    if shutil.which("mvn") is None:
        raise BrokerError("mvn (Maven) is not installed; run deploy/setup.sh")
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.partial-*"):
        # left by a fetch that was killed (SIGKILL) an hour or more ago
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        _say(f"fetching Kafka {KAFKA_VERSION} jars from Maven Central into {target} ...")
        t0 = time.monotonic()
        cmd = [
            "mvn", "-B", "-q", "-Dstyle.color=never", "-f", str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={tmp}",
        ]  # fmt: skip
        # output captured: `start` keeps its stdout for the bootstrap string, and Debian's
        # Maven 3.8 prints stray ANSI resets even with -B -q
        proc = subprocess.run(
            cmd, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        if proc.returncode != 0:
            print(proc.stdout, file=sys.stderr)
            raise BrokerError(f"maven failed (exit {proc.returncode}): {' '.join(cmd)}")
        if not _cache_complete(tmp):
            raise BrokerError(f"maven finished but {tmp} lacks the kafka/reload4j jars")
        tmp.chmod(0o755)  # mkdtemp makes it 0700
        try:
            tmp.rename(target)
        except OSError:
            # a concurrent fetch won the race: keep its (complete) cache
            if not _cache_complete(target):
                raise
            return False
        jars = len(list(target.glob("*.jar")))
        _say(f"fetched {jars} jars in {time.monotonic() - t0:.0f} s")
        return True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class Node:
    index: int  # 1-based, also the KRaft node.id
    client_port: int
    controller_port: int
    dir: Path

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.client_port}"

    @property
    def pid_file(self) -> Path:
        return self.dir / "kafka.pid"

    @property
    def properties(self) -> Path:
        return self.dir / "server.properties"

    @property
    def stdout_log(self) -> Path:
        return self.dir / "stdout.log"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"


def _kafka_dir(var_dir: Path) -> Path:
    return Path(var_dir).resolve() / "kafka"


def _nodes(nodes: int, base_port: int, var_dir: Path) -> list[Node]:
    kdir = _kafka_dir(var_dir)
    return [
        Node(
            index=i,
            client_port=base_port + 2 * (i - 1),
            controller_port=base_port + 2 * (i - 1) + 1,
            dir=kdir / f"node-{i}",
        )
        for i in range(1, nodes + 1)
    ]


def _layout_file(var_dir: Path) -> Path:
    return _kafka_dir(var_dir) / "cluster.json"


def _saved_layout(var_dir: Path) -> tuple[int, int] | None:
    path = _layout_file(var_dir)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return int(data["nodes"]), int(data["base_port"])


def _saved_secure(var_dir: Path) -> bool:
    path = _layout_file(var_dir)
    return path.is_file() and bool(json.loads(path.read_text()).get("secure", False))


def _probe_kwargs(var_dir: Path) -> dict[str, Any]:
    """How the probes connect: as ``admin`` over SASL_SSL to a secured cluster."""
    if not _saved_secure(var_dir):
        return {}
    return sec.client_settings(_kafka_dir(var_dir), sec.ADMIN).security_kwargs()


def _effective_nodes(nodes: int | None, base_port: int | None, var_dir: Path) -> list[Node]:
    """The nodes of the cluster saved under var_dir, else those the arguments describe."""
    saved = _saved_layout(var_dir)
    if saved is not None and nodes is None and base_port is None:
        return _nodes(saved[0], saved[1], var_dir)
    if saved is not None:
        return _nodes(nodes or saved[0], base_port or saved[1], var_dir)
    return _nodes(nodes or 1, base_port or DEFAULT_BASE_PORT, var_dir)


def bootstrap_servers(nodes: int = 1, base_port: int = DEFAULT_BASE_PORT) -> str:
    return ",".join(n.bootstrap for n in _nodes(nodes, base_port, Path(".")))


def _server_properties(
    node: Node, all_nodes: list[Node], security: sec.Security | None = None
) -> str:
    n = len(all_nodes)
    rf = 3 if n >= 3 else 1
    min_isr = 2 if n >= 3 else 1
    voters = ",".join(f"{m.index}@{HOST}:{m.controller_port}" for m in all_nodes)
    settings: list[tuple[str, object]] = [
        ("process.roles", "broker,controller"),
        ("node.id", node.index),
        ("controller.quorum.voters", voters),
        (
            "listeners",
            f"PLAINTEXT://{HOST}:{node.client_port},CONTROLLER://{HOST}:{node.controller_port}",
        ),
        ("advertised.listeners", f"PLAINTEXT://{HOST}:{node.client_port}"),
        ("controller.listener.names", "CONTROLLER"),
        ("inter.broker.listener.name", "PLAINTEXT"),
        ("listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"),
        ("log.dirs", node.data_dir),
        ("num.partitions", 4),
        ("default.replication.factor", rf),
        ("min.insync.replicas", min_isr),
        ("offsets.topic.replication.factor", rf),
        ("transaction.state.log.replication.factor", rf),
        ("transaction.state.log.min.isr", min_isr),
        ("group.initial.rebalance.delay.ms", 0),
        ("auto.create.topics.enable", "false"),
        ("message.max.bytes", 2097152),
        ("replica.fetch.max.bytes", 2097152),
        ("log.retention.check.interval.ms", 60000),
    ]
    if security is not None:
        replace = dict(security.server_settings(node.client_port, node.controller_port))
        settings = [(k, replace.pop(k, v)) for k, v in settings] + list(replace.items())
    head = f"# written by deploy/broker.py for a {n}-node local KRaft cluster; do not edit\n"
    return head + "".join(f"{k}={v}\n" for k, v in settings)


def _java_base(node_dir: Path) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise BrokerError("java is not installed (a JDK 17 is needed); run deploy/setup.sh")
    return [
        java,
        *HEAP,
        *JIT,
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration={LOG4J.as_uri()}",
        f"-Dkafka.logs.dir={node_dir}",
        "-cp",
        f"{cache_dir()}/*",
    ]


# --------------------------------------------------------------------------- processes


def _read_pid(node: Node) -> int | None:
    try:
        return int(node.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _reap(pid: int) -> None:
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        with contextlib.suppress(Exception):
            child.wait(timeout=0.1)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _is_zombie(pid):
        _reap(pid)
        return False
    return True


def _node_pid(node: Node) -> int | None:
    """The pid of this node's running broker process, or None (stale pid files are ignored)."""
    pid = _read_pid(node)
    if pid is None or not _alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid  # no /proc: trust the pid file
    if b"kafka.Kafka" in cmdline and str(node.properties).encode() in cmdline:
        return pid
    return None  # the pid was reused by something else


def running_pids(var_dir: Path | str = DEFAULT_VAR_DIR) -> list[int]:
    """The pids of the running broker processes of the cluster saved under ``var_dir``, in node
    order (a node that is not running is left out)."""
    nodes = _effective_nodes(None, None, Path(var_dir))
    return [pid for pid in map(_node_pid, nodes) if pid is not None]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"(no {path})"
    return "\n".join(text[-lines:])


def _print_tail(node: Node) -> None:
    print(
        f"----- last lines of {node.stdout_log} -----\n{_tail(node.stdout_log)}\n-----",
        file=sys.stderr,
        flush=True,
    )


# --------------------------------------------------------------------------- probes


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, also from code that already runs inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _probe(
    bootstrap: str, timeout_s: float = 3.0, security: dict[str, Any] | None = None
) -> int | None:
    """Number of brokers the node at ``bootstrap`` reports in a Metadata answer, None if none."""
    from aiokafka.client import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000),
                            **(security or {}))
    try:
        await asyncio.wait_for(client.bootstrap(), timeout_s + 1)
        return len(client.cluster.brokers())
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def _probe_all(
    bootstraps: list[str], security: dict[str, Any] | None = None
) -> list[int | None]:
    log = logging.getLogger("aiokafka")
    level = log.level
    log.setLevel(logging.CRITICAL)  # connection refused while starting is expected
    try:
        return list(await asyncio.gather(*(_probe(b, security=security) for b in bootstraps)))
    finally:
        log.setLevel(level)


def probe(bootstraps: list[str], security: dict[str, Any] | None = None) -> list[int | None]:
    """For each ``host:port``: how many brokers it reports in its metadata, None if no answer.
    ``security``: aiokafka's security arguments for a secured cluster."""
    return _run(_probe_all(bootstraps, security))


# --------------------------------------------------------------------------- start / stop


def _cluster_id(var_dir: Path, node_dir: Path) -> str:
    path = _kafka_dir(var_dir) / "cluster-id"
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    out = subprocess.run(
        [*_java_base(node_dir), "kafka.tools.StorageTool", "random-uuid"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cid = out.strip().splitlines()[-1].strip()
    path.write_text(cid + "\n")
    return cid


def _format(nodes: list[Node], cluster_id: str, scram: list[str] | None = None) -> None:
    """Format the storage of the nodes that have not been formatted yet (in parallel)."""
    todo = [n for n in nodes if not (n.data_dir / "meta.properties").is_file()]
    procs: list[tuple[Node, subprocess.Popen[str]]] = []
    for node in todo:
        cmd = [
            *_java_base(node.dir),
            "kafka.tools.StorageTool", "format",
            "-t", cluster_id,
            "-c", str(node.properties),
        ]  # fmt: skip
        for user in scram or ():
            cmd += ["--add-scram", user]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.append((node, proc))
    for node, proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise BrokerError(f"formatting node {node.index} failed:\n{out}")
        _say(f"node {node.index}: storage formatted ({node.data_dir})")


def _launch(node: Node) -> subprocess.Popen[bytes]:
    cmd = [*_java_base(node.dir), "kafka.Kafka", str(node.properties)]
    with node.stdout_log.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=node.dir,
            start_new_session=True,
        )
    _CHILDREN[proc.pid] = proc
    node.pid_file.write_text(f"{proc.pid}\n")
    _say(f"node {node.index}: started pid {proc.pid} on {node.bootstrap} (log {node.stdout_log})")
    return proc


def _kill_launched(launched: dict[int, int]) -> None:
    for pid in launched.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)


def start(
    nodes: int = 1,
    base_port: int = DEFAULT_BASE_PORT,
    var_dir: Path | str = DEFAULT_VAR_DIR,
    *,
    secure: bool = False,
) -> str:
    """Start an ``nodes``-node KRaft cluster unless it answers already; return its bootstrap.

    Returns once every node answers a Metadata request (and, for several nodes, reports all of
    them). Raises BrokerError (after printing the tail of the node's log) if a node dies or the
    cluster does not answer within 60 s; the processes launched by this call are then killed.
    ``secure``: SASL_SSL listeners, SCRAM users and ACLs (for the unprefixed topics) — see
    :mod:`deploy.kafka_security`; the credentials are in ``<var-dir>/kafka/credentials.json``.
    """
    if nodes < 1:
        raise BrokerError("--nodes must be at least 1")
    var_dir = Path(var_dir)
    all_nodes = _nodes(nodes, base_port, var_dir)
    bootstrap = ",".join(n.bootstrap for n in all_nodes)
    kdir = _kafka_dir(var_dir)

    saved = _saved_layout(var_dir)
    if saved is not None and (saved != (nodes, base_port) or _saved_secure(var_dir) != secure):
        raise BrokerError(
            f"{kdir} holds a {'secured ' if _saved_secure(var_dir) else ''}cluster of "
            f"{saved[0]} node(s) on base port {saved[1]}, not a "
            f"{'secured ' if secure else ''}one of {nodes} on {base_port}: run "
            f"'python -m deploy.broker reset --var-dir {var_dir}' first"
        )
    answers = probe([n.bootstrap for n in all_nodes], _probe_kwargs(var_dir))
    if all(a is not None and a >= nodes for a in answers):
        _say(f"a broker already answers on {bootstrap}; leaving it as it is")
        return bootstrap

    fetch_jars()
    kdir.mkdir(parents=True, exist_ok=True)
    security = sec.prepare(kdir, bootstrap) if secure else None
    _layout_file(var_dir).write_text(
        json.dumps({"nodes": nodes, "base_port": base_port, "secure": secure}) + "\n"
    )
    for node in all_nodes:
        node.dir.mkdir(parents=True, exist_ok=True)
        node.properties.write_text(_server_properties(node, all_nodes, security))
        node.properties.chmod(0o600)  # a secured node's file holds the admin password

    _format(all_nodes, _cluster_id(var_dir, all_nodes[0].dir),
            security.scram_arguments() if security else None)

    launched: dict[int, int] = {}  # node index -> pid, only the processes this call started
    for node, answer in zip(all_nodes, answers, strict=True):
        pid = _node_pid(node)
        if pid is not None:
            _say(f"node {node.index}: already running (pid {pid})")
            continue
        if answer is not None:
            _say(f"node {node.index}: something already answers on {node.bootstrap}")
            continue
        launched[node.index] = _launch(node).pid

    deadline = time.monotonic() + START_TIMEOUT_S
    answers = []
    while True:
        for node in all_nodes:
            pid = launched.get(node.index)
            if pid is not None and not _alive(pid):
                _print_tail(node)
                _kill_launched(launched)
                raise BrokerError(f"node {node.index} (pid {pid}) exited during start-up")
        answers = probe([n.bootstrap for n in all_nodes], _probe_kwargs(var_dir))
        if all(a is not None and a >= nodes for a in answers):
            break
        if time.monotonic() > deadline:
            for node in all_nodes:
                _print_tail(node)
            _kill_launched(launched)
            raise BrokerError(
                f"the cluster did not answer within {START_TIMEOUT_S:.0f} s "
                f"(brokers seen per node: {answers})"
            )
        time.sleep(0.5)
    _say(f"{nodes} node(s) answer on {bootstrap}")
    if security is not None and launched:
        try:
            apply_acls(var_dir)
        except BrokerError:
            _kill_launched(launched)
            raise
    return bootstrap


def apply_acls(var_dir: Path | str = DEFAULT_VAR_DIR, prefix: str = "") -> int:
    """Add the ACLs of every principal for the topics and groups under ``prefix`` to the
    secured cluster under ``var_dir`` (idempotent); returns how many ACL bindings that is."""
    kdir = _kafka_dir(Path(var_dir))
    if not _saved_secure(Path(var_dir)):
        raise BrokerError(f"{kdir} holds no secured cluster (start it with --secure)")
    t0 = time.monotonic()
    try:
        count = _run(sec.create_acls(sec.client_settings(kdir, sec.ADMIN), prefix))
    except Exception as exc:
        raise BrokerError(f"adding ACLs failed: {exc}") from exc
    _say(f"ACLs for prefix {prefix!r}: {count} bindings in {time.monotonic() - t0:.1f} s")
    return count


def _wait_gone(pids: dict[int, int], timeout_s: float) -> dict[int, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        pids = {i: p for i, p in pids.items() if _alive(p)}
        if not pids or time.monotonic() > deadline:
            return pids
        time.sleep(0.2)


def stop(
    nodes: int | None = None,
    base_port: int | None = None,
    var_dir: Path | str = DEFAULT_VAR_DIR,
) -> None:
    """Stop the nodes whose pid files are under ``var_dir``: SIGTERM, 30 s, then SIGKILL.

    Stops only processes this module started (pid file + command line); a broker someone
    else runs on the same port is left alone. Does nothing if nothing runs.
    """
    var_dir = Path(var_dir)
    kdir = _kafka_dir(var_dir)
    known = {n.index: n for n in _effective_nodes(nodes, base_port, var_dir)}
    if kdir.is_dir():  # also nodes left over from another layout
        for d in kdir.glob("node-*"):
            with contextlib.suppress(ValueError):
                i = int(d.name.split("-", 1)[1])
                known.setdefault(i, Node(i, 0, 0, d))
    running: dict[int, int] = {}
    for i, node in sorted(known.items()):
        pid = _node_pid(node)
        if pid is not None:
            running[i] = pid
        else:
            node.pid_file.unlink(missing_ok=True)
    if not running:
        _say("no broker process of ours is running")
        return
    for i, pid in running.items():
        _say(f"node {i}: SIGTERM pid {pid}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    left = _wait_gone(running, STOP_TIMEOUT_S)
    for i, pid in left.items():
        _say(f"node {i}: still running after {STOP_TIMEOUT_S:.0f} s, SIGKILL pid {pid}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_gone(left, 5.0)
    for i, pid in running.items():
        _reap(pid)
        known[i].pid_file.unlink(missing_ok=True)
    _say("stopped")


def reset(
    nodes: int | None = None,
    base_port: int | None = None,
    var_dir: Path | str = DEFAULT_VAR_DIR,
) -> None:
    """Stop the cluster and delete ``<var_dir>/kafka`` (data, logs, cluster id)."""
    stop(nodes, base_port, var_dir)
    kdir = _kafka_dir(Path(var_dir))
    if kdir.exists():
        shutil.rmtree(kdir)
        _say(f"deleted {kdir}")


def status(
    nodes: int | None = None,
    base_port: int | None = None,
    var_dir: Path | str = DEFAULT_VAR_DIR,
) -> bool:
    """Print each node and whether it answers; True if all of them answer."""
    all_nodes = _effective_nodes(nodes, base_port, Path(var_dir))
    answers = probe([n.bootstrap for n in all_nodes], _probe_kwargs(Path(var_dir)))
    ok = True
    for node, answer in zip(all_nodes, answers, strict=True):
        pid = _node_pid(node)
        proc = f"pid {pid}" if pid is not None else "no process of ours"
        if answer is None:
            ok = False
            state = "does not answer"
        else:
            state = f"answers ({answer} broker(s) in metadata)"
        print(f"node {node.index}  {node.bootstrap}  {proc}  {state}")
    return ok


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.broker", description="Local Apache Kafka (KRaft) for tests."
    )
    parser.add_argument(
        "command", choices=["fetch", "start", "stop", "reset", "status", "acls", "env"]
    )
    parser.add_argument("--secure", action="store_true",
                        help="start: SASL_SSL listeners, SCRAM users, ACLs")
    parser.add_argument("--prefix", default=os.environ.get("TOPIC_PREFIX", ""),
                        help="acls: the topic prefix to grant ($TOPIC_PREFIX)")
    parser.add_argument("--principal", default=sec.ADMIN, help="env: whose settings to print")
    parser.add_argument("--nodes", type=int, default=None, help="number of nodes (default 1)")
    parser.add_argument(
        "--base-port", type=int, default=None, help=f"first client port ({DEFAULT_BASE_PORT})"
    )
    parser.add_argument(
        "--var-dir", type=Path, default=DEFAULT_VAR_DIR, help=f"state folder ({DEFAULT_VAR_DIR})"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            fetch_jars()
        elif args.command == "start":
            print(start(args.nodes or 1, args.base_port or DEFAULT_BASE_PORT, args.var_dir,
                        secure=args.secure))
        elif args.command == "acls":
            apply_acls(args.var_dir, args.prefix)
        elif args.command == "env":
            if not _saved_secure(args.var_dir):
                raise BrokerError(f"{_kafka_dir(args.var_dir)} holds no secured cluster")
            env = sec.client_env(_kafka_dir(args.var_dir), args.principal)
            print("\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items()))
        elif args.command == "stop":
            stop(args.nodes, args.base_port, args.var_dir)
        elif args.command == "reset":
            reset(args.nodes, args.base_port, args.var_dir)
        elif args.command == "status":
            return 0 if status(args.nodes, args.base_port, args.var_dir) else 3
    except BrokerError as exc:
        _say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
