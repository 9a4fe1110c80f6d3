"""Request bodies decoded strictly: a JSON ``1`` is not ``true`` and ``"5"`` is not ``5``.

Litestar converts a handler's ``data`` leniently (and documents its schema in OpenAPI);
handlers then call ``strict_body`` for the value they use, so every body is checked against
its type exactly. A body that is not JSON is 400; one that does not match is 422 naming the
field by its JSON path (``$.alert_preferences.min_interval_s``).
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request

from tradepulse.api.problems import ProblemError, body_field

T = TypeVar("T")


def invalid_body(errors: list[tuple[str, str]]) -> ProblemError:
    """422 listing ``(json path, message)`` pairs as ``invalid_params``."""
    invalid = [body_field(path, message) for path, message in errors]
    named = "; ".join(f"{i['name']}: {i['reason']}" for i in invalid)
    return ProblemError(422, f"invalid request body: {named}", invalid=invalid)


def _located(exc: msgspec.ValidationError) -> tuple[str, str]:
    """``("$.a.b", "Expected ...")`` of msgspec's ``"Expected ... - at `$.a.b`"``."""
    message, sep, path = str(exc).rpartition(" - at `")
    return (path.rstrip("`"), message) if sep else ("$", str(exc))


def decode_strict(raw: bytes, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise invalid_body([_located(exc)]) from None
    except msgspec.DecodeError as exc:
        raise ProblemError(400, f"the request body is not JSON: {exc}") from None


async def strict_body(request: Request[Any, Any, Any], kind: type[T]) -> T:
    """The body of ``request`` as ``kind``, decoded strictly (see the module docstring)."""
    return decode_strict(await request.body(), kind)
