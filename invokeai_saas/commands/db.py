"""``invokeai-saas db upgrade | current | downgrade``: manage the PostgreSQL schema with Alembic.

The database URL comes from the saas settings (``INVOKEAI_SAAS_DATABASE_URL`` or ``saas.yaml`` in the
InvokeAI root given by ``--root``), or ``--database-url``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError

from invokeai_saas.config import SaasConfigError, load_settings
from invokeai_saas.db import migrate
from invokeai_saas.db.engine import sync_url


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", help="InvokeAI root holding saas.yaml (default: $INVOKEAI_ROOT)")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: from the saas settings)")
    actions = parser.add_subparsers(dest="db_action", required=True)
    up = actions.add_parser("upgrade", help="apply migrations (default: to the latest)")
    up.add_argument("revision", nargs="?", default="head")
    actions.add_parser("current", help="print the database's revision and the latest one")
    down = actions.add_parser("downgrade", help="revert migrations to REVISION ('base' removes everything)")
    down.add_argument("revision")


def _database_url(args: argparse.Namespace) -> str:
    if args.database_url:
        return str(args.database_url)
    import os

    root = args.root or os.environ.get("INVOKEAI_ROOT")
    settings = load_settings(Path(root) / "invokeai.yaml" if root else None)
    if settings.database_url is None:
        raise SaasConfigError("no database configured; set INVOKEAI_SAAS_DATABASE_URL or pass --database-url")
    return settings.database_url


def run(args: argparse.Namespace) -> int:
    try:
        engine = create_engine(sync_url(_database_url(args)), connect_args={"connect_timeout": 10})
        if args.db_action == "upgrade":
            migrate.upgrade(engine, args.revision)
            print(f"database at revision {migrate.current_revision(engine)}")
        elif args.db_action == "downgrade":
            migrate.downgrade(engine, args.revision)
            print(f"database at revision {migrate.current_revision(engine) or 'base (empty)'}")
        else:
            current = migrate.current_revision(engine)
            head = migrate.head_revision()
            state = "up to date" if current == head else "needs 'invokeai-saas db upgrade'"
            print(f"current: {current or 'none'}\nlatest:  {head}\n{state}")
        engine.dispose()
    except SaasConfigError as e:
        print(f"invokeai-saas db: {e}", file=sys.stderr)
        return 2
    except SQLAlchemyError as e:
        # The driver's message names the problem (refused, auth failed) without a traceback.
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        print(f"invokeai-saas db: database error: {reason}", file=sys.stderr)
        return 1
    return 0
