"""Response schemas of the reference reads for the OpenAPI document: what Pipedrive answers, passed on as is.

v2 pipelines and stages as the v2 typings of Pipedrive's `pipedrive` npm package describe them
(GetPipelinesResponse, GetStagesResponse, StageItem); v1 activity types, users and currencies with every
field openapi-v1.yaml lists (ActivityType, BaseUser, getCurrencies). Plain JSON Schema: they describe, they
do not validate.
"""

from __future__ import annotations

from typing import Any

_STRING = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_NULLABLE_STRING = {"type": ["string", "null"]}
# openapi-v1.yaml's icon_key enum (ActivityType).
ICON_KEYS = (
    "task email meeting deadline call lunch calendar downarrow document smartphone camera scissors cogs "
    "bubble uparrow checkbox signpost shuffle addressbook linegraph picture car world search clip sound "
    "brush key padlock pricetag suitcase finish plane loop wifi truck cart bulb bell presentation"
).split()
_REF = "#/components/schemas/{}"


def _described(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {**schema, "description": description}


def _list_response(item: str, v2: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "success": {"type": "boolean", "const": True},
        "data": {"type": "array", "items": {"$ref": _REF.format(item)}},
    }
    if v2:
        properties["additional_data"] = {
            "type": "object",
            "description": "Cursor pagination.",
            "properties": {
                "next_cursor": _described(
                    _NULLABLE_STRING, "Send as `cursor` for the next page; null on the last page."
                )
            },
        }
    return {"type": "object", "properties": properties}


REFERENCE_SCHEMAS: dict[str, Any] = {
    "Pipeline": {
        "type": "object",
        "description": "A pipeline (Pipedrive API v2).",
        "properties": {
            "id": _INT,
            "name": _STRING,
            "order_nr": _described(_INT, "Display order; the lowest is the default pipeline."),
            "is_deleted": _BOOL,
            "is_deal_probability_enabled": _BOOL,
            "add_time": _described(_STRING, "RFC 3339, e.g. `2024-01-01T00:00:00Z`."),
            "update_time": _described(_STRING, "RFC 3339."),
        },
    },
    "Stage": {
        "type": "object",
        "description": "A stage of a pipeline (Pipedrive API v2).",
        "properties": {
            "id": _INT,
            "order_nr": _described(_INT, "Position in its pipeline."),
            "name": _STRING,
            "is_deleted": _BOOL,
            "deal_probability": _described(_INT, "Success probability of its deals, in percent."),
            "pipeline_id": _INT,
            "is_deal_rot_enabled": _BOOL,
            "days_to_rotten": _described({"type": ["integer", "null"]}, "Days until an idle deal rots."),
            "add_time": _described(_STRING, "RFC 3339."),
            "update_time": _described(_STRING, "RFC 3339."),
        },
    },
    "ActivityType": {
        "type": "object",
        "properties": {
            "id": _INT,
            "name": _STRING,
            "icon_key": {"type": "string", "enum": ICON_KEYS},
            "color": _described(_STRING, "Six hex digits, e.g. `FFFFFF`."),
            "order_nr": _described(_INT, "Order in activity type selections."),
            "key_string": _described(_STRING, "Generated from the name when the type was created."),
            "active_flag": _BOOL,
            "is_custom_flag": _BOOL,
            "add_time": _STRING,
            "update_time": _STRING,
        },
    },
    "User": {
        "type": "object",
        "description": "A user of the company (Pipedrive's BaseUser).",
        "properties": {
            "id": _INT,
            "name": _STRING,
            "default_currency": _described(_STRING, "A currency code, e.g. `EUR`."),
            "locale": _described(_STRING, "e.g. `en_GB`."),
            "lang": _INT,
            "email": _STRING,
            "phone": _NULLABLE_STRING,
            "activated": _BOOL,
            "last_login": _described(_STRING, "YYYY-MM-DD HH:MM:SS"),
            "created": _described(_STRING, "YYYY-MM-DD HH:MM:SS"),
            "modified": _NULLABLE_STRING,
            "has_created_company": _BOOL,
            "access": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "app": {
                            "type": "string",
                            "enum": [
                                "global",
                                "sales",
                                "campaigns",
                                "projects",
                                "account_settings",
                                "partnership",
                            ],
                        },
                        "admin": _BOOL,
                        "permission_set_id": _STRING,
                    },
                },
            },
            "active_flag": _BOOL,
            "timezone_name": _STRING,
            "timezone_offset": _STRING,
            "role_id": _INT,
            "icon_url": _NULLABLE_STRING,
            "is_you": _described(_BOOL, "True for the user whose installation answered."),
            "is_deleted": _BOOL,
        },
    },
    "Currency": {
        "type": "object",
        "properties": {
            "id": _described(_INT, "What goals' `expected_outcome.currency_id` refers to."),
            "code": _described(_STRING, "ISO 4217 for every non-custom currency."),
            "name": _STRING,
            "decimal_points": _INT,
            "symbol": _STRING,
            "active_flag": _BOOL,
            "is_custom_flag": _BOOL,
        },
    },
    "PipelinesResponse": _list_response("Pipeline", v2=True),
    "StagesResponse": _list_response("Stage", v2=True),
    "ActivityTypesResponse": _list_response("ActivityType", v2=False),
    "UsersResponse": _list_response("User", v2=False),
    "CurrenciesResponse": _list_response("Currency", v2=False),
}
