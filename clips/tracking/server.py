"""The shared tracking server: an MLflow server on PostgreSQL with served artifacts and basic auth.

``clips server start`` checks everything a hospital deployment gets wrong (secrets,
database, schema version) and then runs the plain ``mlflow server`` command line that
tracking_server/README.md documents, so either can be used.
"""
from __future__ import annotations

import http.client
import os
import socket
import ssl
import stat
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from clips.disk import require_owner_only
from clips.errors import ClipsError
from clips.tracking.certificates import check_pair, client_context, explain

ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
JOBS_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
GRANTABLE = PERMISSIONS[:3]  # what `clips server user add` may give (NO_PERMISSIONS is a default only)


@dataclass
class ServerConfig:
    backend_store_uri: str = "postgresql://postgres@127.0.0.1:5432/clips_mlflow"
    artifacts_destination: str = "./mlartifacts"  # or s3://bucket/prefix (MLFLOW_S3_ENDPOINT_URL for MinIO)
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 2
    auth: bool = True
    auth_db_uri: str = ""  # empty: the backend's server, database <name>_auth
    admin_username: str = "admin"
    admin_password_file: str = ""
    secret_key_file: str = ""
    default_permission: str = "READ"
    # MLflow's basic auth checks the password hash (scrypt) on every request, most of a small server's load
    # (measured by benchmarks/bench_auth_cost.py; figures in tracking_server/README.md, security). MLflow's own
    # credential cache skips that for a (user, password) it accepted within the last auth_cache_ttl_s seconds,
    # in each worker. The price (MLflow's words, basic_auth.ini): a
    # password changed or a user deleted through one worker may still be accepted by the others for up to this
    # long. 0 turns the cache off.
    auth_cache_ttl_s: int = 30
    allowed_hosts: list[str] = field(default_factory=list)
    runtime_dir: str = ""  # where the generated auth config goes (not the repo)
    certfile: str = ""  # TLS: with keyfile, the server speaks HTTPS only (clips server make-cert makes a pair)
    keyfile: str = ""

    @property
    def scheme(self) -> str:
        return "https" if self.certfile else "http"


def _secret(env: str, path: str, what: str) -> str:
    if path:
        require_owner_only(path, what)  # a secret anyone else on the machine can read is not a secret
        try:
            value = Path(path).read_text().strip()
        except OSError as exc:
            raise ClipsError(f"cannot read the {what} from {path}: {exc}") from None
    else:
        value = os.environ.get(env, "").strip()
    if not value:
        raise ClipsError(f"no {what}: set {env} or pass its file (--{what.replace(' ', '-')}-file); "
                         "never put it in the repository")
    return value


def _with_database(uri: str, name: str) -> str:
    p = urlparse(uri)
    return urlunparse(p._replace(path=f"/{name}"))


def ensure_database(uri: str) -> bool:
    """Create the PostgreSQL database of ``uri`` if it is missing. True when it was created."""
    if not uri.startswith("postgresql"):
        return False
    import psycopg

    p = urlparse(uri.replace("postgresql+psycopg://", "postgresql://").replace("postgresql+psycopg2://", "postgresql://"))
    name = p.path.lstrip("/")
    admin = urlunparse(p._replace(scheme="postgresql", path="/postgres"))
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{name}"')
            return not exists
    except psycopg.OperationalError as exc:
        raise ClipsError(f"cannot reach PostgreSQL at {p.hostname}:{p.port or 5432} as {p.username}: "
                         f"{str(exc).strip().splitlines()[0]}") from None


def schema_state(uri: str) -> tuple[str | None, str]:
    """(current MLflow schema revision or None for an empty database, the revision this MLflow needs)."""
    import sqlalchemy
    from mlflow.store.db.utils import _get_latest_schema_revision, _get_schema_version

    engine = sqlalchemy.create_engine(uri)
    try:
        insp = sqlalchemy.inspect(engine)
        current = _get_schema_version(engine) if insp.has_table("alembic_version") else None
    finally:
        engine.dispose()
    return current, _get_latest_schema_revision()


def check_schema(uri: str) -> None:
    current, head = schema_state(uri)
    if current is not None and current != head:
        raise ClipsError(f"the tracking database is at schema {current}, this MLflow needs {head}: back it up "
                         "(tracking_server/README.md), then run 'clips server upgrade'")


def upgrade(uri: str) -> tuple[str | None, str]:
    """Migrate the tracking database to this MLflow's schema (mlflow db upgrade)."""
    import sqlalchemy
    from mlflow.store.db.utils import _upgrade_db

    before, head = schema_state(uri)
    engine = sqlalchemy.create_engine(uri)
    try:
        _upgrade_db(engine)
    finally:
        engine.dispose()
    return before, head


def auth_config(cfg: ServerConfig, runtime: Path) -> Path:
    """Write the basic-auth config (no password in it: MLflow reads that from the environment)."""
    auth_db = cfg.auth_db_uri or _with_database(cfg.backend_store_uri,
                                                urlparse(cfg.backend_store_uri).path.lstrip("/") + "_auth")
    ensure_database(auth_db)
    runtime.mkdir(parents=True, exist_ok=True)
    path = runtime / "basic_auth.ini"
    path.write_text("[mlflow]\n"
                    f"default_permission = {cfg.default_permission}\n"
                    f"database_uri = {auth_db}\n"
                    f"admin_username = {cfg.admin_username}\n"
                    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                    f"auth_cache_ttl_seconds = {int(cfg.auth_cache_ttl_s)}\n")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


def server_command(cfg: ServerConfig) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line and the environment it needs, after every check."""
    if cfg.default_permission not in PERMISSIONS:
        raise ClipsError(f"default permission must be one of {', '.join(PERMISSIONS)}")
    env = dict(os.environ)
    # MLflow's server jobs run its GenAI features (scorers, prompt optimisation), none of which CLIPS uses; each of
    # their ~8 consumer processes imports MLflow at every start (about one of 2 cores for tens of seconds) and keeps
    # its memory. Off unless the site turns them on (MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true).
    env.setdefault(JOBS_ENV, "false")
    if cfg.auth:
        env[ADMIN_PASSWORD_ENV] = _secret(ADMIN_PASSWORD_ENV, cfg.admin_password_file, "admin password")
        env[SECRET_KEY_ENV] = _secret(SECRET_KEY_ENV, cfg.secret_key_file, "secret key")
    ensure_database(cfg.backend_store_uri)
    check_schema(cfg.backend_store_uri)
    artifacts = cfg.artifacts_destination
    if "://" not in artifacts:
        artifacts = str(Path(artifacts).expanduser().resolve())
        Path(artifacts).mkdir(parents=True, exist_ok=True)
    hosts = cfg.allowed_hosts or [f"{h}:{cfg.port}" for h in ("localhost", "127.0.0.1", socket.gethostname())]
    hosts += [h.split(":")[0] for h in hosts if ":" in h]
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", cfg.backend_store_uri, "--serve-artifacts",
           "--artifacts-destination", artifacts, "--host", cfg.host, "--port", str(cfg.port),
           "--workers", str(cfg.workers), "--allowed-hosts", ",".join(dict.fromkeys(hosts))]
    if cfg.certfile or cfg.keyfile:
        # uvicorn (MLflow's default server) then listens with TLS only: a plain-HTTP request on the port gets no
        # answer, so no credentials are ever sent in clear and then redirected.
        check_pair(cfg.certfile, cfg.keyfile)
        cmd += ["--uvicorn-opts", f"--ssl-certfile {Path(cfg.certfile).resolve()} "
                                  f"--ssl-keyfile {Path(cfg.keyfile).resolve()}"]
    if cfg.auth:
        runtime = Path(cfg.runtime_dir) if cfg.runtime_dir else Path.home() / ".config" / "clips-server"
        env["MLFLOW_AUTH_CONFIG_PATH"] = str(auth_config(cfg, runtime))
        cmd += ["--app-name", "basic-auth"]
    return cmd, env


def probe(url: str, timeout: float = 5.0) -> str | None:
    """None when the server answers GET /health, else why not, in one line (a certificate problem names the fix)."""
    context = client_context() if url.startswith("https://") else None
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout, context=context) as r:
            return None if r.status == 200 else f"the tracking server {url} answered GET /health with {r.status}"
    except ssl.SSLCertVerificationError as exc:
        return explain(url, exc)
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            return explain(url, exc.reason)
        return _no_answer(url)
    except (OSError, ValueError, http.client.HTTPException):
        return _no_answer(url)


def _no_answer(url: str) -> str:
    hint = " (an https:// server?)" if url.startswith("http://") else ""
    return (f"the tracking server {url} does not answer (GET /health){hint}; is it running, and is "
            "MLFLOW_TRACKING_URI right?")


def health(url: str, timeout: float = 5.0) -> bool:
    return probe(url, timeout) is None


def require_reachable(tracking_uri: str) -> None:
    """Fail at once, naming the URI, when a remote tracking server does not answer or refuses our credentials;
    a local SQLite store is created here, once, under a file lock."""
    if tracking_uri.startswith("sqlite:///"):
        create_sqlite_store(tracking_uri)
        return
    if not tracking_uri.startswith(("http://", "https://")):
        return
    problem = probe(tracking_uri)
    if problem:
        raise ClipsError(problem)
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient(tracking_uri).search_experiments(max_results=1)
    except MlflowException as exc:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME", "(no MLFLOW_TRACKING_USERNAME)")
        raise ClipsError(f"the tracking server {tracking_uri} refused user {user}: "
                         f"{exc.message.splitlines()[0]}") from None


def create_sqlite_store(tracking_uri: str) -> None:
    """Create a fresh local store's tables under an exclusive file lock: two trainings starting together on a
    new SQLite store otherwise race on MLflow's migrations ("duplicate column name"), and one of them dies."""
    import fcntl
    from pathlib import Path

    db = Path(tracking_uri[len("sqlite:///"):])
    if not db.parent.is_dir():
        return  # MLflow's own error names the folder
    with open(db.with_name(db.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri).search_experiments(max_results=1)  # creates and migrates the tables once
