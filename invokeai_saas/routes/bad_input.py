"""What saas mode refuses as bad input (422) before any handler sees it, and why.

Stock InvokeAI stores text and integers in SQLite, which takes anything: a NUL byte, a lone UTF-16 surrogate, an
integer of any size, ``NaN``. PostgreSQL refuses the first three (NUL in ``text`` and in ``jsonb``, text that is not
UTF-8, integers past ``bigint``), so on stock's routes each one became a driver error and a 500 carrying the SQL.
``NaN`` and ``Infinity`` are not JSON at all (RFC 8259), but Python's parser accepts them, and they then fail where
the value is stored or serialised again. These rules refuse them where input arrives, once for every route: query
and path in ``invokeai_saas.routes.request_limits``, JSON bodies in the one parse every JSON body goes through
(``invokeai_saas.patches.starlette_request_json``).

Integers are refused outside PostgreSQL's ``bigint`` (signed 64 bits) wherever they are written as integers: in a
JSON body (any number without a fraction or exponent), and in a query or path value that is a decimal integer
literal. The query and path rule does not know the parameter's declared type, so a text parameter holding a
decimal number of 20 or more digits is refused too; no stock parameter expects one.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from fastapi import HTTPException

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_INTEGER_LITERAL = re.compile(r"[+-]?\d+")
_MAX_REPORTED = 100  # characters of a refused value quoted back to the client


class BadInput(ValueError):
    """A value saas mode refuses; ``where`` is its location as FastAPI reports one (e.g. ``("query", "offset")``)."""

    def __init__(self, where: tuple[str | int, ...], message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(message)

    def to_http(self) -> HTTPException:
        """FastAPI's own 422 shape, so clients parse it as any other validation error."""
        return HTTPException(
            status_code=422, detail=[{"type": "value_error", "loc": list(self.where), "msg": self.message}]
        )


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as PostgreSQL text, or None."""
    if "\x00" in value:
        return "must not contain NUL characters (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (it contains a lone surrogate, e.g. \\ud800)"
    return None


def integer_problem(value: int) -> str | None:
    if INT64_MIN <= value <= INT64_MAX:
        return None
    return f"is out of range (integers are from {INT64_MIN} to {INT64_MAX})"


def check_text(where: tuple[str | int, ...], value: str) -> None:
    problem = text_problem(value)
    if problem is not None:
        raise BadInput(where, f"Text {problem}")


def check_parameter(where: tuple[str | int, ...], value: str) -> None:
    """A query or path value: storable text and, when written as a decimal integer, within ``bigint``."""
    check_text(where, value)
    if len(value) > 18 and _INTEGER_LITERAL.fullmatch(value):  # 19+ characters: the shortest that can overflow
        problem = integer_problem(int(value))
        if problem is not None:
            raise BadInput(where, f"Integer {value[:_MAX_REPORTED]} {problem}")


class _Refused(ValueError):
    """Raised inside ``json.loads`` by the number hooks; carries the message, not a location (the parser has none
    for us)."""


def _parse_int(literal: str) -> int:
    value = int(literal)
    problem = integer_problem(value)
    if problem is not None:
        raise _Refused(f"Integer {literal[:_MAX_REPORTED]} {problem}")
    return value


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # e.g. 1e400: JSON has no infinity, and neither does PostgreSQL's jsonb
        raise _Refused(f"Number {literal[:_MAX_REPORTED]} is out of range (too large for a finite number)")
    return value


def _parse_constant(literal: str) -> Any:
    raise _Refused(f"{literal} is not a JSON value (RFC 8259 has no NaN or Infinity)")


def _check_strings(document: Any) -> None:
    """Every key and string value of a parsed document; iterative, so a deep document cannot overflow the stack."""
    pending: list[tuple[tuple[str | int, ...], Any]] = [(("body",), document)]
    while pending:
        where, value = pending.pop()
        if isinstance(value, str):
            check_text(where, value)
        elif isinstance(value, dict):
            for key, item in value.items():
                check_text((*where, key[:_MAX_REPORTED]), key)
                pending.append(((*where, key), item))
        elif isinstance(value, list):
            pending.extend(((*where, index), item) for index, item in enumerate(value))


def strict_json_loads(body: bytes | str) -> Any:
    """Parse a request body as JSON, refusing (``BadInput``) what ``json.loads`` accepts but saas mode cannot
    store; malformed JSON raises ``json.JSONDecodeError`` as before (FastAPI answers it with 422)."""
    try:
        document = json.loads(body, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except _Refused as refused:
        raise BadInput(("body",), str(refused)) from None
    except RecursionError:
        raise BadInput(("body",), "JSON nested too deeply") from None
    _check_strings(document)
    return document
