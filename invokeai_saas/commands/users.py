"""``invokeai-saas user add | list | modify | delete``: saas-mode equivalents of InvokeAI's
``invoke-useradd`` / ``invoke-userlist`` / ``invoke-usermod`` / ``invoke-userdel``.

The stock tools open the SQLite file; in saas mode users live in PostgreSQL, so these go through the
PostgreSQL user service with the same options, password rules and messages. Every API process sees the
change on its next request (there is no per-process user cache).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from invokeai_saas.commands.common import add_database_arguments, command_engine, database_error_reason
from invokeai_saas.config import SaasConfigError

if TYPE_CHECKING:  # InvokeAI is imported only when a user command actually runs, keeping --help fast
    from invokeai.app.services.users.users_base import UserServiceBase
    from invokeai.app.services.users.users_common import UserDTO
    from sqlalchemy import Engine

LIVE_SERVER_NOTE = (
    "   Running servers apply this to new requests immediately; open connections are re-checked within a minute."
)


PLAN_HELP = "move the user to this plan now, with its credits (e.g. 'tester' for staff); new users start on 'trial'"


class CommandError(Exception):
    """A problem the operator can fix; printed as one line."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_database_arguments(parser)
    actions = parser.add_subparsers(dest="user_action", required=True)

    add = actions.add_parser("add", help="create a user (like invoke-useradd)")
    add.add_argument("--email", "-e", required=True, help="user email address")
    add.add_argument("--password", "-p", help="password (prompted for when omitted)")
    add.add_argument("--name", "-n", help="display name")
    add.add_argument("--admin", "-a", action="store_true", help="make the user an administrator")
    add.add_argument("--plan", help=PLAN_HELP)

    listing = actions.add_parser("list", help="list users (like invoke-userlist)")
    listing.add_argument("--json", action="store_true", help="print JSON")

    modify = actions.add_parser("modify", help="change a user (like invoke-usermod)")
    modify.add_argument("--email", "-e", required=True, help="user email address")
    modify.add_argument("--name", "-n", help="new display name")
    modify.add_argument("--password", "-p", help="new password")
    admin = modify.add_mutually_exclusive_group()
    admin.add_argument("--admin", "-a", action="store_true", help="grant administrator privileges")
    admin.add_argument("--no-admin", action="store_true", help="remove administrator privileges")
    active = modify.add_mutually_exclusive_group()
    active.add_argument("--activate", action="store_true", help="allow the user to sign in")
    active.add_argument("--deactivate", action="store_true", help="stop the user from signing in")
    modify.add_argument("--plan", help=PLAN_HELP)

    delete = actions.add_parser("delete", help="delete a user (like invoke-userdel)")
    delete.add_argument("--email", "-e", required=True, help="user email address")
    delete.add_argument("--force", "-f", action="store_true", help="delete without the confirmation prompt")


def _describe(user: UserDTO) -> str:
    return (
        f"   User ID: {user.user_id}\n"
        f"   Email: {user.email}\n"
        f"   Display Name: {user.display_name or '(not set)'}\n"
        f"   Admin: {'Yes' if user.is_admin else 'No'}\n"
        f"   Active: {'Yes' if user.is_active else 'No'}"
    )


def _checked_password(password: str) -> str:
    from invokeai.app.services.auth.password_utils import validate_password_strength

    valid, message = validate_password_strength(password)
    if not valid:
        raise CommandError(f"password validation failed: {message}")
    return password


def _prompted_password() -> str:
    """The password typed at a hidden prompt, or the first line of a piped stdin; an error, not ``EOFError``'s
    traceback, when stdin is closed or empty (a script that forgot ``--password``)."""
    try:
        if sys.stdin is not None and sys.stdin.isatty():
            return getpass.getpass("Password: ")
        line = sys.stdin.readline() if sys.stdin is not None else ""
    except EOFError:
        line = ""
    if not line:
        raise CommandError("no password given: pass --password, or type it at the prompt (stdin is closed)")
    return line.rstrip("\r\n")


def _find(users: UserServiceBase, email: str) -> UserDTO:
    user = users.get_by_email(email)
    if user is None:
        raise CommandError(f"no user found with email '{email}'")
    return user


def _checked_plan(engine: Engine, plan_id: str | None) -> None:
    """Refuse an unknown plan before anything is written (a user is not created, nor changed, half-way)."""
    from invokeai_saas.credits.plans import PlanService

    if plan_id is None:
        return
    plans = PlanService(engine)
    if plans.get_plan(plan_id) is None:
        known = ", ".join(plan.plan_id for plan in plans.list_plans(include_internal=True))
        raise CommandError(f"no plan '{plan_id}' (plans: {known})")


def _start_plan(engine: Engine, user_id: str, plan_id: str) -> str:
    from invokeai_saas.credits.ledger import CreditLedger
    from invokeai_saas.credits.periods import SubscriptionPeriods

    started = SubscriptionPeriods(engine, CreditLedger(engine)).start_plan(user_id, plan_id)
    until = f" until {started.period_end:%Y-%m-%d %H:%M} UTC" if started.period_end is not None else ""
    if started.period_start is None:
        return f"   Plan: {started.plan_name}{until} (already on it: unchanged)"
    return f"   Plan: {started.plan_name}{until} ({started.credits_granted} credits granted)"


def _add(users: UserServiceBase, engine: Engine, args: argparse.Namespace) -> None:
    from invokeai.app.services.users.users_common import UserCreateRequest

    _checked_plan(engine, args.plan)
    password = args.password if args.password is not None else _prompted_password()
    request = UserCreateRequest(
        email=args.email, display_name=args.name, password=_checked_password(password), is_admin=args.admin
    )
    user = users.create(request)
    plan = f"\n{_start_plan(engine, user.user_id, args.plan)}" if args.plan is not None else ""
    print(f"User created.\n{_describe(user)}{plan}")


def _list(users: UserServiceBase, engine: Engine, args: argparse.Namespace) -> None:
    everyone: list[UserDTO] = []
    while True:  # page through, so a large user table is listed whole
        page = users.list_users(limit=500, offset=len(everyone))
        everyone.extend(page)
        if len(page) < 500:
            break
    if args.json:
        rows = [
            {
                "id": u.user_id,
                "email": u.email,
                "name": u.display_name,
                "is_admin": u.is_admin,
                "is_active": u.is_active,
            }
            for u in everyone
        ]
        print(json.dumps(rows, indent=2))
        return
    if not everyone:
        print("No users found in database.")
        return
    print(f"{'User ID':<36} {'Email':<30} {'Display Name':<20} {'Admin':<8} {'Active':<8}")
    print("-" * 108)
    for u in everyone:
        print(
            f"{u.user_id:<36} {u.email[:29]:<30} {(u.display_name or '')[:19]:<20} "
            f"{'Yes' if u.is_admin else 'No':<8} {'Yes' if u.is_active else 'No':<8}"
        )
    print(f"\nTotal users: {len(everyone)}")


def _modify(users: UserServiceBase, engine: Engine, args: argparse.Namespace) -> None:
    from invokeai.app.services.users.users_common import UserUpdateRequest

    user = _find(users, args.email)
    is_admin = True if args.admin else False if args.no_admin else None
    is_active = True if args.activate else False if args.deactivate else None
    if args.name is None and args.password is None and is_admin is None and is_active is None and args.plan is None:
        raise CommandError(
            "no changes specified; use --name, --password, --admin/--no-admin, --activate/--deactivate or --plan"
        )
    password = _checked_password(args.password) if args.password is not None else None
    _checked_plan(engine, args.plan)
    changes = UserUpdateRequest(display_name=args.name, password=password, is_admin=is_admin, is_active=is_active)
    updated = users.update(user.user_id, changes)
    plan = f"\n{_start_plan(engine, user.user_id, args.plan)}" if args.plan is not None else ""
    print(f"User updated.\n{_describe(updated)}{plan}\n{LIVE_SERVER_NOTE}")


def _delete(users: UserServiceBase, engine: Engine, args: argparse.Namespace) -> None:
    user = _find(users, args.email)
    if not args.force:
        if not sys.stdin.isatty():
            raise CommandError("refusing to delete without confirmation; pass --force")
        print(f"User to delete:\n{_describe(user)}")
        if input("Delete this user? (yes/no): ").strip().lower() not in ("yes", "y"):
            print("Deletion cancelled.")
            return
    users.delete(user.user_id)
    print(f"User deleted.\n{LIVE_SERVER_NOTE}")


ACTIONS: dict[str, Callable[[UserServiceBase, Engine, argparse.Namespace], None]] = {
    "add": _add,
    "list": _list,
    "modify": _modify,
    "delete": _delete,
}


def run(args: argparse.Namespace) -> int:
    from invokeai_saas.services.users.users_postgres import UserServicePostgres

    try:
        engine = command_engine(args)
        try:
            ACTIONS[args.user_action](UserServicePostgres(engine), engine, args)
        finally:
            engine.dispose()
    except (CommandError, SaasConfigError, ValueError) as e:
        print(f"invokeai-saas user: {e}", file=sys.stderr)
        return 1
    except SQLAlchemyError as e:
        reason = database_error_reason(e)
        print(f"invokeai-saas user: database error: {reason}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("invokeai-saas user: cancelled", file=sys.stderr)
        return 130
    return 0
