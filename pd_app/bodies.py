"""A JSON body's fields, refused with every problem listed at once (the API's `details` format): shared by the
app's own write endpoints (partner keys, webhooks) and the checks behind them."""

from __future__ import annotations

from collections.abc import Collection


class InvalidFields(Exception):
    """A request that cannot be accepted; `details` lists each problem as {field, message, code}."""

    def __init__(self, details: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{d['field']}: {d['message']}" for d in details))
        self.details = details


def object_fields(
    body: object, allowed: Collection[str], noun: str, error: type[InvalidFields] = InvalidFields
) -> dict:
    """`body` if it is a JSON object holding only `allowed` fields; else `error` naming each stray field."""
    if not isinstance(body, dict):
        raise error([{"field": "body", "message": "The body must be a JSON object.", "code": "invalid_type"}])
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise error(
            [
                {"field": name, "message": f"{name} is not a field of {noun}.", "code": "unknown_field"}
                for name in unknown
            ]
        )
    return body
