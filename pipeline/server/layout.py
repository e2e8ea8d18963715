"""The server's defaults, and where each part of a server lives inside its folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_DIR = Path(".server")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000  # MLflow's usual port: MLFLOW_TRACKING_URI=http://127.0.0.1:5000
DEFAULT_PG_PORT = 5433  # next to PostgreSQL's 5432, which a system cluster may hold
DEFAULT_PG_USER = "postgres"  # Debian's PostgreSQL packages create this system user
DEFAULT_WORKERS = 2
DEFAULT_TIMEOUT_S = 180.0  # the first start creates MLflow's schema in PostgreSQL: tens of seconds
DB_USER = "mlflow"  # the cluster's superuser, which MLflow connects as
TRACKING_DB = "mlflow"
AUTH_DB = "mlflow_auth"
PG_HOST = "127.0.0.1"  # PostgreSQL is never exposed: only MLflow talks to it


@dataclass(frozen=True)
class Layout:
    """Where each part of a server lives inside its folder."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state.json"

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def pgpass(self) -> Path:
        return self.root / "pgpass"

    @property
    def pg_home(self) -> Path:
        return self.root / "postgres"

    @property
    def pg_data(self) -> Path:
        return self.pg_home / "data"

    @property
    def pg_log(self) -> Path:
        return self.pg_home / "postgres.log"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def mlflow_log(self) -> Path:
        return self.root / "mlflow.log"

    @property
    def auth(self) -> Path:
        return self.root / "auth"
