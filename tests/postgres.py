"""A real PostgreSQL server for the tests: Debian's binaries, a temporary data directory, a free loopback port.

``start_postgres()`` runs ``initdb`` (with a password, scram-sha-256 for every connection) and ``pg_ctl start``
listening on 127.0.0.1 only, with its unix socket in the temporary directory; ``PostgresServer.stop()`` stops
it and removes the directory. PostgreSQL refuses to run as root: when the tests run as root, the server runs as
the ``postgres`` user that Debian's package creates (through ``runuser``).

Where the binaries are missing the fixture skips, unless ``BMI_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) makes
that a failure.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
USER, PASSWORD, DATABASE = "bmi", "bmi-test-pw", "bmi"


@dataclass
class PostgresServer:
    """A running server: its port, data directory, and the SQLAlchemy URL Optuna's RDBStorage takes."""

    port: int
    root: Path
    bin_dir: Path
    run_as: list[str]

    def url(self, password: str = PASSWORD, database: str = DATABASE) -> str:
        return f"postgresql+psycopg2://{USER}:{password}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        subprocess.run([*self.run_as, str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.root / "data"),
                        "-m", "immediate", "-w"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` that holds ``initdb`` and ``pg_ctl``."""
    for d in PG_BIN_DIRS:
        if (d / "initdb").is_file() and (d / "pg_ctl").is_file():
            return d
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unavailable_reason() -> str | None:
    """Why no server can be started here (None when one can)."""
    if find_bin_dir() is None:
        return "PostgreSQL's server binaries not found (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no unprivileged 'postgres' user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root and no runuser to start the server as 'postgres'"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "the psycopg2 driver is not installed (pip install psycopg2-binary)"
    return None


def start_postgres() -> PostgresServer:
    """Initialise and start a server (a user ``bmi`` with a password owning a database ``bmi``)."""
    bin_dir = find_bin_dir()
    root = Path(tempfile.mkdtemp(prefix="bmi-pg-"))
    run_as: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    root.chmod(0o700)
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if run_as:
        os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
    data = root / "data"
    subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
                    "--auth=scram-sha-256", "-E", "UTF8", "--locale=C"], check=True, capture_output=True, timeout=120)
    port = free_port()
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} -c fsync=off"
    proc = subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "start", "-D", str(data), "-w", "-t", "60",
                           "-l", str(root / "log"), "-o", opts], capture_output=True, text=True, timeout=90)
    server = PostgresServer(port=port, root=root, bin_dir=bin_dir, run_as=run_as)
    if proc.returncode != 0:
        log = (root / "log").read_text() if (root / "log").exists() else ""
        server.stop()
        raise RuntimeError(f"PostgreSQL did not start: {proc.stderr}\n{log}")
    import psycopg2

    deadline = time.monotonic() + 30
    while True:
        try:
            conn = psycopg2.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD, dbname="postgres")
            break
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.2)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {DATABASE}")
    conn.close()
    return server
