"""The ``invokeai-saas`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from invokeai_saas import __version__


def _settings(args: argparse.Namespace) -> int:
    from invokeai_saas.config import ENV_PREFIX, SaasSettings

    for name, field in SaasSettings.model_fields.items():
        default = field.get_default(call_default_factory=True)
        print(f"{ENV_PREFIX}{name.upper()}\t{name}\t{default!r}\t{field.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="invokeai-saas", description="Run InvokeAI as a hosted service.")
    parser.add_argument("--version", action="version", version=f"invokeai-saas {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    from invokeai_saas.commands import dev

    dev_parser = commands.add_parser("dev", help="run the local stack and invokeai-web in saas mode")
    dev.add_arguments(dev_parser)
    dev_parser.set_defaults(handler=dev.run)

    from invokeai_saas.commands import db

    db_parser = commands.add_parser("db", help="manage the PostgreSQL schema (upgrade, current, downgrade)")
    db.add_arguments(db_parser)
    db_parser.set_defaults(handler=db.run)

    from invokeai_saas.commands import users

    user_parser = commands.add_parser("user", help="manage users in PostgreSQL (like invoke-useradd & co.)")
    users.add_arguments(user_parser)
    user_parser.set_defaults(handler=users.run)

    from invokeai_saas.commands import worker

    worker_parser = commands.add_parser("worker", help="run queue items dispatched over SQS (a GPU worker process)")
    worker.add_arguments(worker_parser)
    worker_parser.set_defaults(handler=worker.run)

    settings_parser = commands.add_parser("settings", help="list every saas setting with its default")
    settings_parser.set_defaults(handler=_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
