"""What the database-facing subcommands share: finding the database URL the server would use."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError

from invokeai_saas.config import SaasConfigError, load_settings
from invokeai_saas.db.engine import sync_url


def add_database_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", "-r", help="InvokeAI root holding saas.yaml (default: $INVOKEAI_ROOT)")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: from the saas settings)")


# What ``SaasSettings.database_url`` accepts; ``sync_url`` turns each into psycopg's driver.
POSTGRES_SCHEMES = ("postgresql://", "postgresql+psycopg://", "postgres://")


def database_url(args: argparse.Namespace) -> str:
    """``--database-url``, else the saas settings (environment, then saas.yaml in ``--root``).

    ``--database-url`` is held to the settings' rule: ``sync_url`` forces the PostgreSQL driver onto whatever
    scheme it is given, so ``sqlite://`` or ``mysql://`` would otherwise be tried as a PostgreSQL server.
    """
    if getattr(args, "database_url", None):
        url = str(args.database_url)
        if not url.startswith(POSTGRES_SCHEMES):
            # Only the scheme is echoed: the rest of a URL may hold a password.
            what = f"'{url.split('://', 1)[0]}://' databases are not supported" if "://" in url else "not a URL"
            raise SaasConfigError(
                f"--database-url: {what}; invokeai-saas keeps its data in PostgreSQL "
                "(postgresql://user:password@host:port/database)"
            )
        return url
    root = args.root or os.environ.get("INVOKEAI_ROOT")
    settings = load_settings(Path(root) / "invokeai.yaml" if root else None)
    if settings.database_url is None:
        raise SaasConfigError("no database configured; set INVOKEAI_SAAS_DATABASE_URL or pass --database-url")
    return settings.database_url


def command_engine(args: argparse.Namespace) -> Engine:
    """The engine for one command run, with a connect timeout so a dead server fails fast."""
    return create_engine(sync_url(database_url(args)), connect_args={"connect_timeout": 10})


def database_error_reason(error: SQLAlchemyError) -> str:
    """The driver's own first line (refused, authentication failed...), without SQLAlchemy's traceback text."""
    return str(getattr(error, "orig", None) or error).strip().splitlines()[0]
