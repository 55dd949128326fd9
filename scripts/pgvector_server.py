#!/usr/bin/env python3
"""Starts (or reuses) a PostgreSQL with the pgvector extension and prints its URL.

    python3 scripts/pgvector_server.py [--data-dir DIR]     # prints the URL on stdout
    python3 scripts/pgvector_server.py [--data-dir DIR] --stop

The server comes from the `pgserver` Python package (`pip install pgserver`), which bundles a
PostgreSQL build with the vector extension; the system PostgreSQL has no pgvector. The server
outlives this script (pg_ctl detaches it), keeps its data in DIR (by default
<tmp>/flywheel-pgvector-<user>) and is reused by later runs on the same directory, so
`export FLYWHEEL_TEST_PGVECTOR_URL="$(python3 scripts/pgvector_server.py)"` is cheap to repeat.
`--stop` stops it; deleting DIR afterwards discards its data.

pgserver listens on a unix socket only: it starts postgres with `-h ""` on the command line,
which no postgresql.conf setting can override. The URL therefore names the socket directory:
`postgres://postgres@localhost:5432/postgres?host=/socket/dir`, a form both sqlx and psql accept
(the `host` parameter overrides the URL's host; 5432 only names the socket file). Authentication
is `trust` for local connections. When run as root, pgserver runs postgres as a system user
`pgserver`, which it creates, and makes the directories above DIR traversable by others.

Every wait is bounded (--timeout, 60 seconds by default); on failure the server log's tail is
printed to stderr and the exit status is non-zero.
"""

import argparse
import getpass
import logging
import os
import signal
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

CHECK_SQL = (
    "CREATE EXTENSION IF NOT EXISTS vector; "
    "SELECT extversion FROM pg_extension WHERE extname = 'vector';"
)


class Timeout(Exception):
    pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(
            os.environ.get("FLYWHEEL_PGVECTOR_DATA")
            or Path(tempfile.gettempdir()) / f"flywheel-pgvector-{getpass.getuser()}"
        ),
        help="the PostgreSQL data directory (created when missing; its parent must exist)",
    )
    parser.add_argument("--stop", action="store_true", help="stop the server and exit")
    parser.add_argument(
        "--timeout", type=int, default=60, help="seconds any step may take (default 60)"
    )
    args = parser.parse_args()

    # platformdirs warns when XDG_RUNTIME_DIR is unset (as in CI); the fallback it picks works,
    # and stderr should carry only what matters.
    warnings.filterwarnings("ignore", module="platformdirs")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        import pgserver  # noqa: F401  (imported here so that a missing package gets a clear message)
    except ImportError:
        sys.exit("pgvector_server.py: the pgserver package is missing (pip install pgserver)")

    data_dir = args.data_dir.expanduser().resolve()
    # pgserver's own wait for the server to report `ready` has no limit; an alarm bounds it and
    # everything else in this process.
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.timeout)
    try:
        if args.stop:
            stop(data_dir, args.timeout)
        else:
            start(data_dir, args.timeout)
    except Timeout:
        report_log(data_dir)
        sys.exit(f"pgvector_server.py: gave up after {args.timeout} seconds")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
        report_log(data_dir)
        sys.exit(f"pgvector_server.py: {err}")
    finally:
        signal.alarm(0)


def on_alarm(_signum, _frame):
    raise Timeout()


def start(data_dir, timeout):
    import pgserver

    # cleanup_mode=None leaves the server running when this process exits.
    server = pgserver.get_server(data_dir, cleanup_mode=None)
    info = server.get_postmaster_info()
    if info.socket_dir is None:
        sys.exit("pgvector_server.py: the server reports no unix socket directory")
    url = f"postgres://postgres@localhost:{info.port or 5432}/postgres?host={info.socket_dir}"

    psql = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    output = subprocess.run(
        [str(psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", CHECK_SQL],
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    version = output.stdout.strip().splitlines()[-1] if output.stdout.strip() else "unknown"
    print(
        f"pgvector {version} on PostgreSQL in {data_dir} (pid {info.pid}); "
        f"stop it with: python3 scripts/pgvector_server.py --data-dir {data_dir} --stop",
        file=sys.stderr,
    )
    print(url, flush=True)


def stop(data_dir, timeout):
    from pgserver import _commands
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir) if data_dir.exists() else None
    if info is None or not info.is_running():
        print(f"no server is running in {data_dir}", file=sys.stderr)
        return
    # As root, pgserver runs postgres as the `pgserver` user, and pg_ctl must run as the same.
    user = "pgserver" if os.geteuid() == 0 else None
    _commands.pg_ctl(
        ["-w", "-t", str(timeout), "-m", "fast", "stop"],
        pgdata=data_dir,
        user=user,
        timeout=timeout,
    )
    print(f"stopped the server in {data_dir}", file=sys.stderr)


def report_log(data_dir):
    log = data_dir / "log"
    if log.exists():
        tail = log.read_text(errors="replace").splitlines()[-20:]
        print(f"--- the last lines of {log}:", *tail, sep="\n", file=sys.stderr)


if __name__ == "__main__":
    main()
