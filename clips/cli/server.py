"""The shared tracking server and its runs: ``clips server start|make-cert|upgrade|health|user add``,
``clips runs reap``."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from clips.cli._common import _reachable, cli
from clips.tracking.server import GRANTABLE, PERMISSIONS, ServerConfig

_SERVER = ServerConfig()  # the option defaults of server start: its dataclass


# ----------------------------------------------------------------------------- server
@cli.group()
def server():
    """The shared tracking server (tracking_server/README.md)."""


def _server_options(f):
    for opt in reversed([
        click.option("--backend-store-uri", envvar="CLIPS_SERVER_DB", show_default=True,
                     default=_SERVER.backend_store_uri,
                     help="PostgreSQL URL of the tracking database."),
    ]):
        f = opt(f)
    return f


@server.command("start")
@_server_options
@click.option("--artifacts-destination", envvar="CLIPS_SERVER_ARTIFACTS", default=_SERVER.artifacts_destination,
              show_default=True, help="Folder (or s3://bucket/prefix) where the server keeps artifacts.")
@click.option("--host", default=_SERVER.host, show_default=True)
@click.option("--port", default=_SERVER.port, show_default=True, type=int)
@click.option("--workers", default=_SERVER.workers, show_default=True, type=click.IntRange(1, 64))
@click.option("--auth/--no-auth", default=_SERVER.auth, show_default=True, help="MLflow's basic-auth app.")
@click.option("--admin-username", default=_SERVER.admin_username, show_default=True)
@click.option("--admin-password-file", default="", help="Else $MLFLOW_AUTH_ADMIN_PASSWORD.")
@click.option("--secret-key-file", default="", help="Else $MLFLOW_FLASK_SERVER_SECRET_KEY.")
@click.option("--default-permission", default=_SERVER.default_permission, show_default=True,
              type=click.Choice(PERMISSIONS))
@click.option("--auth-db-uri", default="", help="Database of the accounts (default: <backend db>_auth).")
@click.option("--auth-cache-ttl", "auth_cache_ttl_s", default=_SERVER.auth_cache_ttl_s, show_default=True,
              type=click.IntRange(0, 3600), help="Seconds a worker trusts a password it checked (0: check every "
              "request; tracking_server/README.md, security).")
@click.option("--allowed-hosts", default="", help="Comma-separated Host headers to accept.")
@click.option("--runtime-dir", default="",
              help="Where the generated auth config goes (default ~/.config/clips-server).")
@click.option("--certfile", envvar="CLIPS_SERVER_CERTFILE", default="",
              help="TLS certificate (PEM): with --keyfile the server speaks HTTPS only (clips server make-cert).")
@click.option("--keyfile", envvar="CLIPS_SERVER_KEYFILE", default="", help="Its private key (PEM, mode 600).")
@click.option("--print-command", is_flag=True, help="Print the mlflow server command line and exit.")
def server_start(backend_store_uri, artifacts_destination, host, port, workers, auth, admin_username,
                 admin_password_file, secret_key_file, default_permission, auth_db_uri, auth_cache_ttl_s,
                 allowed_hosts, runtime_dir, certfile, keyfile, print_command):
    """Start the MLflow tracking server (PostgreSQL, served artifacts, basic auth)."""
    from clips.tracking.server import server_command

    cfg = ServerConfig(
        backend_store_uri=backend_store_uri, artifacts_destination=artifacts_destination, host=host, port=port,
        workers=workers, auth=auth, auth_db_uri=auth_db_uri, admin_username=admin_username,
        admin_password_file=admin_password_file, secret_key_file=secret_key_file,
        default_permission=default_permission, auth_cache_ttl_s=auth_cache_ttl_s,
        allowed_hosts=[h for h in allowed_hosts.split(",") if h],
        runtime_dir=runtime_dir, certfile=certfile, keyfile=keyfile)
    cmd, env = server_command(cfg)
    if print_command:
        click.echo(" ".join(cmd))
        return
    click.echo(f"tracking server on {cfg.scheme}://{host}:{port} (health: /health), database "
               f"{backend_store_uri.split('@')[-1]}, artifacts {artifacts_destination}")
    sys.stdout.flush()
    os.execvpe(cmd[0], cmd, env)


@server.command("make-cert")
@click.option("--host", "hosts", multiple=True, required=True,
              help="A name or address clients reach the server by (repeatable; the first is the subject).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for server.crt and server.key.")
@click.option("--days", default=825, show_default=True, type=click.IntRange(1, 825))
def server_make_cert(hosts, out, days):
    """A self-signed TLS certificate for a lab without a hospital CA (tracking_server/README.md, TLS)."""
    from clips.tracking.certificates import CA_ENV, make_self_signed

    cert, key = make_self_signed(list(hosts), Path(out), days)
    click.echo(f"wrote {cert} and {key} (mode 600), valid {days} days for {', '.join(hosts)}")
    click.echo(f"  server: clips server start --certfile {cert} --keyfile {key} ...")
    click.echo(f"  each client: copy {cert.name} over (it holds no secret) and export {CA_ENV}=/path/to/{cert.name}")


@server.command("upgrade")
@_server_options
@click.option("--yes", is_flag=True, help="Confirm that the database has been backed up.")
def server_upgrade(backend_store_uri, yes):
    """Migrate the tracking database to this MLflow's schema (back it up first)."""
    from clips.tracking.server import schema_state, upgrade

    current, head = schema_state(backend_store_uri)
    if current == head:
        click.echo(f"schema already at {head}")
        return
    if not yes:
        raise click.UsageError("back up the database first (tracking_server/README.md), then pass --yes")
    before, after = upgrade(backend_store_uri)
    click.echo(f"schema upgraded from {before or 'empty'} to {after}")


@server.command("health")
@click.option("--url", envvar="MLFLOW_TRACKING_URI", required=True)
def server_health(url):
    """Exit 0 when the server answers GET /health."""
    from clips.tracking.server import health

    ok = health(url)
    click.echo(f"{url}: {'ok' if ok else 'not answering'}")
    sys.exit(0 if ok else 1)


@server.group("user")
def server_user():
    """Accounts and permissions (as the admin: MLFLOW_TRACKING_USERNAME/PASSWORD)."""


@server_user.command("add")
@click.argument("name")
@click.option("--permission", required=True, type=click.Choice(GRANTABLE))
@click.option("--experiment", default="", help="Experiment name; default: every experiment and registered model.")
@click.option("--password-env", default="CLIPS_NEW_USER_PASSWORD", show_default=True,
              help="Environment variable holding the new user's password (else prompted).")
def server_user_add(name, permission, experiment, password_env):
    """Create an account (or update its permission) through MLflow's auth API."""
    from clips.tracking.accounts import add_user

    _reachable()
    password = os.environ.get(password_env) or click.prompt(f"password for {name}", hide_input=True,
                                                           confirmation_prompt=True)
    for line in add_user(name, password, permission, experiment):
        click.echo(line)


# ----------------------------------------------------------------------------- runs
@cli.group()
def runs():
    """Housekeeping of runs."""


@runs.command("reap")
@click.option("--older-than", "hours", required=True, type=click.FloatRange(min=0),
              help="Hours without a sign of life.")
@click.option("--experiment", default="", help="Only this experiment (default: all).")
@click.option("--dry-run", is_flag=True)
def runs_reap(hours, experiment, dry_run):
    """Mark runs left RUNNING by a killed process as FAILED."""
    from clips.tracking.reap import reap

    _reachable()
    for run, age in reap(hours, experiment or None, dry_run):
        click.echo(f"{'would mark' if dry_run else 'marked'} {run.info.run_id} ({run.info.run_name}) FAILED: "
                   f"no sign of life for {age:.1f} h")
