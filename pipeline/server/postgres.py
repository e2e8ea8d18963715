"""PostgreSQL, MLflow's backend store: its user and binaries, the cluster, its databases and password."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError
from pipeline.server.files import _log_size, _tail, _write_private
from pipeline.server.layout import DB_USER, DEFAULT_PG_USER, PG_HOST, TRACKING_DB, Layout


@dataclass(frozen=True)
class PgUser:
    """Who runs PostgreSQL: ``name`` (None: this process's own user, when that is not root)."""

    name: str | None
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, Any]:
        return {} if self.name is None else {"user": self.uid, "group": self.gid, "extra_groups": []}


def pg_user(name: str | None) -> PgUser:
    """The user PostgreSQL runs as: this one unless root; as root ``name`` (default ``postgres``), created
    as a system user with ``useradd --system`` when absent."""
    if os.geteuid() != 0:
        if name and name != pwd.getpwuid(os.geteuid()).pw_name:
            raise PipelineError(f"--pg-user {name}: only root can run PostgreSQL as another user")
        return PgUser(None, os.geteuid(), os.getegid())
    name = name or DEFAULT_PG_USER
    if name == "root":
        raise PipelineError("--pg-user root: PostgreSQL refuses to run as root; name an unprivileged user")
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        done = subprocess.run([useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                               "--shell", "/usr/sbin/nologin", "--comment", "PostgreSQL for the MLflow server", name],
                              capture_output=True, text=True, check=False) if os.path.exists(useradd) else None
        if done is None or done.returncode != 0:
            why = "useradd not found" if done is None else (done.stderr.strip() or f"exit {done.returncode}")
            raise PipelineError(f"PostgreSQL user {name!r} does not exist and could not be created ({why}); "
                                "create it or name another with --pg-user") from None
        entry = pwd.getpwnam(name)
    if entry.pw_uid == 0:
        raise PipelineError(f"--pg-user {name}: that user is root (uid 0); PostgreSQL refuses to run as root")
    return PgUser(name, entry.pw_uid, entry.pw_gid)


def pg_bin(given: Path | None) -> Path:
    """The folder with PostgreSQL's ``initdb`` and ``pg_ctl``: ``given``, else ``initdb``'s on PATH, else the
    newest ``/usr/lib/postgresql/<version>/bin`` (Debian keeps them off PATH)."""
    if given is not None:
        candidates = [Path(given)]
    else:
        on_path = shutil.which("initdb")
        candidates = [Path(on_path).resolve().parent] if on_path else []
        versions = Path("/usr/lib/postgresql").glob("*/bin")
        candidates += sorted(versions, key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()],
                             reverse=True)
    for folder in candidates:
        if all(os.access(folder / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    where = str(given) if given is not None else "PATH or /usr/lib/postgresql/*/bin"
    raise PipelineError(f"PostgreSQL's initdb and pg_ctl not found in {where}: install PostgreSQL (Debian: "
                        "apt-get install postgresql) or pass --pg-bin with the folder that holds them")


def _as_pg(user: PgUser, args: list[str | Path], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    tool = Path(str(args[0])).name
    try:
        return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL, timeout=timeout, **user.popen_kwargs())
    except subprocess.TimeoutExpired:
        raise PipelineError(f"{tool} did not finish in {timeout:.0f} s") from None
    except OSError as exc:  # cannot run it, or cannot enter cwd as the PostgreSQL user
        raise PipelineError(f"{tool}: cannot run it in {cwd} as {user.name or 'this user'} ({exc})") from None


def _pg_ctl(bins: Path, user: PgUser, layout: Layout, *args: str,
            timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return _as_pg(user, [bins / "pg_ctl", "-D", layout.pg_data, *args], layout.pg_home, timeout)


def _prepare_pg_home(layout: Layout, user: PgUser) -> None:
    """Make ``postgres/`` owned by the PostgreSQL user (mode 0700), and check that user can reach it."""
    layout.pg_home.mkdir(parents=True, exist_ok=True)
    if user.name is not None:
        os.chown(layout.pg_home, user.uid, user.gid)
    os.chmod(layout.pg_home, 0o700)
    reach = _as_pg(user, ["test", "-w", layout.pg_home, "-a", "-x", layout.pg_home], Path("/"), 30)
    if reach.returncode != 0:
        raise PipelineError(
            f"{layout.pg_home}: PostgreSQL's user {user.name!r} cannot reach it (a parent folder is not "
            "searchable by other users, as /root usually is); pass --dir with a folder it can reach, "
            "e.g. /srv/mlflow-server, or chmod o+x the parents"
        )


def initdb(bins: Path, user: PgUser, layout: Layout) -> None:
    """Create the cluster: superuser ``mlflow`` with a generated password (kept in ``pgpass``), UTF-8,
    password (SCRAM) authentication, TCP connections from 127.0.0.1/::1 only. It is built beside ``data``
    and renamed into place, so an interrupted initdb never leaves a cluster that looks complete."""
    building = layout.pg_home / "data.initdb"
    shutil.rmtree(building, ignore_errors=True)
    password = secrets.token_urlsafe(24)
    _write_private(layout.pgpass, f"*:*:*:{DB_USER}:{password}\n")  # libpq's format; read via PGPASSFILE
    pwfile = layout.pg_home / ".pwfile"
    _write_private(pwfile, password + "\n")
    if user.name is not None:
        os.chown(pwfile, user.uid, user.gid)
    try:
        done = _as_pg(user, [bins / "initdb", "-D", building, "-U", DB_USER, f"--pwfile={pwfile}",
                             "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale",
                             "--no-instructions"], layout.pg_home, 300)
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[-1]
        raise PipelineError(f"initdb failed in {building}: {last}")
    os.rename(building, layout.pg_data)


def _pg_password(layout: Layout) -> str:
    try:
        return layout.pgpass.read_text().strip().rsplit(":", 1)[1]
    except (OSError, IndexError):
        raise PipelineError(f"{layout.pgpass}: the database password is missing; the cluster in "
                            f"{layout.pg_data} cannot be used without it (remove {layout.root} to start afresh)"
                            ) from None


def pg_running(bins: Path, user: PgUser, layout: Layout) -> int | None:
    """The postmaster's pid when the cluster in ``layout`` runs, else None."""
    if not (layout.pg_data / "PG_VERSION").is_file():
        return None
    if _pg_ctl(bins, user, layout, "status", timeout=30).returncode != 0:
        return None
    try:
        return int((layout.pg_data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def start_postgres(bins: Path, user: PgUser, layout: Layout, port: int, timeout: float) -> int:
    """Start the cluster on 127.0.0.1:``port`` and wait until it accepts connections; return its pid."""
    options = f"-p {port} -c listen_addresses={PG_HOST} -c unix_socket_directories=''"
    since = _log_size(layout.pg_log)
    done = _pg_ctl(bins, user, layout, "-l", str(layout.pg_log), "-w", "-t", str(int(timeout)), "-o", options,
                   "start", timeout=timeout + 30)
    pid = pg_running(bins, user, layout)
    if done.returncode != 0 or pid is None:
        why = _tail(layout.pg_log, since, ("FATAL", "PANIC", "ERROR", "unrecognized", "invalid", "could not"), most=2)
        stop_postgres(bins, user, layout)  # pg_ctl may give up waiting while the postmaster lives on
        raise PipelineError(f"PostgreSQL failed to start on {PG_HOST}:{port} (pg_ctl exited {done.returncode}): "
                            f"{why} (log: {layout.pg_log})")
    return pid


def stop_postgres(bins: Path, user: PgUser, layout: Layout) -> bool:
    """``pg_ctl stop -m fast`` (then ``-m immediate`` if that does not finish); whether one was running."""
    if pg_running(bins, user, layout) is None:
        return False
    if _pg_ctl(bins, user, layout, "stop", "-m", "fast", "-w", "-t", "60", timeout=90).returncode != 0:
        _pg_ctl(bins, user, layout, "stop", "-m", "immediate", "-w", "-t", "30", timeout=60)
    if pg_running(bins, user, layout) is not None:
        raise PipelineError(f"PostgreSQL in {layout.pg_data} did not stop (log: {layout.pg_log})")
    return True


def create_databases(layout: Layout, port: int, names: tuple[str, ...]) -> None:
    """Create the databases ``names`` that do not exist yet (every start: a crash after initdb heals)."""
    import psycopg2

    try:
        connection = psycopg2.connect(host=PG_HOST, port=port, user=DB_USER, password=_pg_password(layout),
                                      dbname="postgres", connect_timeout=30)
    except psycopg2.Error as exc:
        raise PipelineError(f"PostgreSQL on {PG_HOST}:{port}: cannot connect as {DB_USER} "
                            f"({' '.join(str(exc).split())})") from None
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            for name in names:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cursor.fetchone() is None:
                    cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


def backend_uri(port: int, database: str = TRACKING_DB) -> str:
    """The SQLAlchemy URI of a database in the cluster (no password in it: libpq reads ``PGPASSFILE``)."""
    return f"postgresql+psycopg2://{DB_USER}@{PG_HOST}:{port}/{database}"


def _cluster(layout: Layout, state: dict[str, Any]) -> tuple[Path, PgUser] | None:
    """PostgreSQL's binaries and the user that owns this folder's cluster, or None when there is no cluster.

    From the state file when there is one; else found as :func:`pg_bin` finds them, the user being the
    data folder's owner (a cluster left running by a start whose state file is gone is still stopped).
    """
    if not (layout.pg_data / "PG_VERSION").is_file():
        return None
    owner = layout.pg_data.stat()
    if state.get("pg_bin"):
        bins = Path(state["pg_bin"])
    else:
        try:
            bins = pg_bin(None)
        except PipelineError:
            return None
    if os.geteuid() != 0:
        return bins, PgUser(None, os.geteuid(), os.getegid())
    try:
        name = pwd.getpwuid(owner.st_uid).pw_name
    except KeyError:
        return None
    return bins, PgUser(name, owner.st_uid, owner.st_gid)
