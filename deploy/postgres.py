"""A throwaway PostgreSQL 15 server for tests and development.

Debian's ``postgresql`` package provides the binaries (``/usr/lib/postgresql/15/bin``); the
cluster lives in ``<var-dir>/postgres/`` (data/, log, the Unix socket) and belongs to the
``postgres`` OS user when this runs as root, because ``initdb`` refuses to run as root. If the
``postgres`` user cannot reach ``<var-dir>`` (a parent folder is not traversable for it), the
cluster goes to ``/tmp/selfcare-pg-<port>`` instead.

CLI::

    python -m deploy.postgres start   # init once, start, wait until it answers, print the URL
    python -m deploy.postgres status  # exit 0 when it answers, 3 otherwise
    python -m deploy.postgres url     # print the SQLAlchemy URL
    python -m deploy.postgres stop    # fast shutdown; nothing if it does not run
    python -m deploy.postgres reset   # stop + delete the cluster's folder

Options: ``--port`` (55432), ``--var-dir`` (``<repo>/var``). Messages go to stderr; ``start``
and ``url`` print only the URL on stdout (``postgresql+psycopg://selfcare@127.0.0.1:55432/selfcare``).
Authentication is ``trust`` on 127.0.0.1: fine for tests, never for a deployment.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg

PG_BIN = Path("/usr/lib/postgresql/15/bin")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VAR_DIR = REPO_ROOT / "var"
DEFAULT_PORT = 55432
HOST = "127.0.0.1"
USER = "selfcare"
DATABASE = "selfcare"
OS_USER = "postgres"  # owner of the cluster when we run as root
START_TIMEOUT_S = 60

# Appended once to data/postgresql.conf after initdb.
CONF = """
# ---- deploy/postgres.py: throwaway test cluster ----
listen_addresses = '127.0.0.1'
unix_socket_directories = '{socket_dir}'
# Durability is switched off for test speed: a crash (not a clean stop) may lose or corrupt
# data. Never use these three settings for a database whose content matters.
fsync = off
synchronous_commit = off
full_page_writes = off
"""


class PostgresError(RuntimeError):
    """The server could not be initialised, started or stopped."""


def _say(msg: str) -> None:
    print(f"[postgres] {msg}", file=sys.stderr, flush=True)


def url(port: int = DEFAULT_PORT) -> str:
    """The SQLAlchemy URL of the test database."""
    return f"postgresql+psycopg://{USER}@{HOST}:{port}/{DATABASE}"


def _as_root() -> bool:
    return os.geteuid() == 0


def _run(
    args: list[str], cwd: Path, *, capture: bool = True, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool, as the ``postgres`` OS user when we are root."""
    cmd = args
    if _as_root():
        cmd = ["su", OS_USER, "-s", "/bin/sh", "-c", shlex.join(args)]
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=capture,
        text=True,
        check=False,
        start_new_session=True,  # Ctrl-C in the caller's terminal must not reach the server
    )
    if check and proc.returncode != 0:
        out = (proc.stdout or "") + (proc.stderr or "")
        raise PostgresError(f"{' '.join(args)} failed (exit {proc.returncode}):\n{out}")
    return proc


def _reachable(folder: Path) -> bool:
    """Whether the ``postgres`` OS user can traverse ``folder`` (and all its parents)."""
    if not _as_root():
        return True
    return _run(["test", "-x", str(folder)], cwd=Path("/")).returncode == 0


def _fallback_dir(port: int) -> Path:
    # a fixed name so that stop/reset find it again; _prepare_folder refuses one it did not make
    return Path(f"/tmp/selfcare-pg-{port}")  # noqa: S108


def cluster_dir(port: int = DEFAULT_PORT, var_dir: Path | str = DEFAULT_VAR_DIR) -> Path:
    """``<var-dir>/postgres``, or ``/tmp/selfcare-pg-<port>`` if that is out of reach."""
    var = Path(var_dir).resolve()
    if var.is_dir():
        return var / "postgres" if _reachable(var) else _fallback_dir(port)
    fallback = _fallback_dir(port)
    return fallback if fallback.is_dir() else var / "postgres"


def _data(folder: Path) -> Path:
    return folder / "data"


def _log(folder: Path) -> Path:
    return folder / "log"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path})"


def _connect(port: int, dbname: str = "postgres", timeout_s: int = 2) -> psycopg.Connection:
    return psycopg.connect(
        host=HOST, port=port, user=USER, dbname=dbname, connect_timeout=timeout_s, autocommit=True
    )


def answers(port: int = DEFAULT_PORT) -> bool:
    """pg_isready, with our user: True if the server on ``port`` accepts a connection."""
    try:
        with _connect(port):
            return True
    except psycopg.Error:
        return False


def _ensure_database(port: int) -> None:
    with _connect(port) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
            return
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
        _say(f"created database {DATABASE}")


def _prepare_folder(folder: Path) -> None:
    owner = pwd.getpwnam(OS_USER).pw_uid if _as_root() else os.geteuid()
    if folder.is_symlink() or (folder.exists() and folder.stat().st_uid not in (owner, 0)):
        # e.g. a /tmp/selfcare-pg-<port> planted by another user
        raise PostgresError(f"{folder} is a symlink or belongs to another user; remove it")
    folder.mkdir(parents=True, exist_ok=True)
    if _as_root():
        pw = pwd.getpwnam(OS_USER)
        os.chown(folder, pw.pw_uid, pw.pw_gid)
    folder.chmod(0o700)


def _running(folder: Path) -> bool:
    if not (_data(folder) / "PG_VERSION").is_file():
        return False
    proc = _run([str(PG_BIN / "pg_ctl"), "-D", str(_data(folder)), "status"], cwd=folder)
    return proc.returncode == 0


def start(port: int = DEFAULT_PORT, var_dir: Path | str = DEFAULT_VAR_DIR) -> str:
    """Initialise (once) and start the cluster unless it answers already; return the URL."""
    if answers(port):
        _say(f"a server already answers on {HOST}:{port}; leaving it as it is")
        _ensure_database(port)
        return url(port)
    if not (PG_BIN / "initdb").is_file():
        raise PostgresError(f"{PG_BIN}/initdb is missing: run deploy/setup.sh")

    var = Path(var_dir).resolve()
    var.mkdir(parents=True, exist_ok=True)
    folder = cluster_dir(port, var)
    if folder.parent != var:
        _say(f"the {OS_USER} user cannot reach {var}: the cluster goes to {folder}")
    _prepare_folder(folder)
    data = _data(folder)

    if not (data / "PG_VERSION").is_file():
        if data.exists():
            shutil.rmtree(data)  # left by an interrupted initdb
        _say(f"initdb {data}")
        _run(
            [
                str(PG_BIN / "initdb"),
                "-D", str(data),
                "-A", "trust",
                "-U", USER,
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",  # test cluster: no fsync of the fresh files either
            ],
            cwd=folder,
            check=True,
        )  # fmt: skip
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(CONF.format(socket_dir=folder))

    if _running(folder):
        raise PostgresError(
            f"the cluster in {folder} runs but does not answer on port {port}; "
            f"see {_log(folder)} or run 'python -m deploy.postgres stop --port {port}'"
        )
    proc = _run(
        [
            str(PG_BIN / "pg_ctl"),
            "-D", str(data),
            "-l", str(_log(folder)),
            "-o", f"-p {port}",
            "-w", "-t", str(START_TIMEOUT_S),
            "start",
        ],
        cwd=folder,
    )  # fmt: skip
    if proc.returncode != 0:
        print(f"----- last lines of {_log(folder)} -----\n{_tail(_log(folder))}\n-----",
              file=sys.stderr)  # fmt: skip
        raise PostgresError(f"pg_ctl start failed (exit {proc.returncode}): {proc.stderr.strip()}")

    deadline = time.monotonic() + START_TIMEOUT_S
    while not answers(port):
        if time.monotonic() > deadline:
            raise PostgresError(f"the server did not answer on {HOST}:{port}; see {_log(folder)}")
        time.sleep(0.2)
    _ensure_database(port)
    _say(f"PostgreSQL answers on {HOST}:{port} (cluster {folder})")
    return url(port)


def stop(port: int = DEFAULT_PORT, var_dir: Path | str = DEFAULT_VAR_DIR) -> None:
    """Stop the cluster (fast shutdown; immediate if that hangs). Nothing if it does not run."""
    folder = cluster_dir(port, var_dir)
    if not _running(folder):
        _say(f"no server of ours runs in {folder}")
        return
    pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(_data(folder))]
    proc = _run([*pg_ctl, "-m", "fast", "-w", "-t", "30", "stop"], cwd=folder)
    if proc.returncode != 0:
        _say(f"fast shutdown failed ({proc.stderr.strip()}); trying immediate")
        _run([*pg_ctl, "-m", "immediate", "-w", "-t", "30", "stop"], cwd=folder, check=True)
    _say(f"stopped the server in {folder}")


def reset(port: int = DEFAULT_PORT, var_dir: Path | str = DEFAULT_VAR_DIR) -> None:
    """Stop the cluster and delete its folder."""
    stop(port, var_dir)
    folder = cluster_dir(port, var_dir)
    if folder.exists():
        shutil.rmtree(folder)
        _say(f"deleted {folder}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.postgres", description="Throwaway PostgreSQL 15 for tests."
    )
    parser.add_argument("command", choices=["start", "stop", "url", "reset", "status"])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"({DEFAULT_PORT})")
    parser.add_argument(
        "--var-dir", type=Path, default=DEFAULT_VAR_DIR, help=f"state folder ({DEFAULT_VAR_DIR})"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "start":
            print(start(args.port, args.var_dir))
        elif args.command == "stop":
            stop(args.port, args.var_dir)
        elif args.command == "url":
            print(url(args.port))
        elif args.command == "reset":
            reset(args.port, args.var_dir)
        elif args.command == "status":
            ok = answers(args.port)
            print(f"{HOST}:{args.port} {'answers' if ok else 'does not answer'}"
                  f" (cluster folder {cluster_dir(args.port, args.var_dir)})")  # fmt: skip
            return 0 if ok else 3
    except PostgresError as exc:
        _say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
