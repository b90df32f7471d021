"""``invokeai-saas db upgrade | current | downgrade``: manage the PostgreSQL schema with Alembic.

The database URL comes from the saas settings (``INVOKEAI_SAAS_DATABASE_URL`` or ``saas.yaml`` in the
InvokeAI root given by ``--root``), or ``--database-url``.
"""

from __future__ import annotations

import argparse
import sys

from alembic.util import CommandError
from sqlalchemy.exc import SQLAlchemyError

from invokeai_saas.commands.common import add_database_arguments, command_engine, database_error_reason
from invokeai_saas.config import SaasConfigError
from invokeai_saas.db import migrate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_arguments(parser)
    actions = parser.add_subparsers(dest="db_action", required=True)
    up = actions.add_parser("upgrade", help="apply migrations (default: to the latest)")
    up.add_argument("revision", nargs="?", default="head")
    actions.add_parser("current", help="print the database's revision and the latest one")
    down = actions.add_parser("downgrade", help="revert migrations to REVISION ('base' removes everything)")
    down.add_argument("revision")


def run(args: argparse.Namespace) -> int:
    try:
        engine = command_engine(args)
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
    except CommandError as e:
        # Alembic's own refusals (an unknown revision, a migration that refuses, e.g. 0009 on duplicate emails).
        print(f"invokeai-saas db: {e}", file=sys.stderr)
        return 1
    except SQLAlchemyError as e:
        # The driver's message names the problem (refused, auth failed) without a traceback.
        reason = database_error_reason(e)
        print(f"invokeai-saas db: database error: {reason}", file=sys.stderr)
        return 1
    return 0
