"""The query strings of the five reference reads, as Pipedrive takes them: the single source of their
validation (goals/validation.py's `validate_query`) and of their OpenAPI parameters.

v2 pipelines and stages: `sort_by`, `sort_direction`, `limit` (1-500, Pipedrive's default 100) and `cursor`
(the opaque `additional_data.next_cursor` of the previous page), stages also `pipeline_id`; as the v2
typings of Pipedrive's `pipedrive` npm package (33.x, PipelinesApi.getPipelines / StagesApi.getStages)
describe them. v1 currencies take `term`; v1 activityTypes and users take no parameter at all.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from ..goals.fields import QueryId, _digits_to_int
from ..goals.models import Problem, QueryModel

MAX_LIMIT = 500  # Pipedrive's own maximum for v2 lists
CURSOR_PATTERN = r"^[A-Za-z0-9+/=_-]{1,512}$"
_CURSOR_RE = re.compile(CURSOR_PATTERN.strip("^$"))
MAX_TERM = 100


def _cursor(value: str) -> str:
    if not _CURSOR_RE.fullmatch(value):
        raise PydanticCustomError(
            "invalid_format", "must be the `additional_data.next_cursor` of the previous page"
        )
    return value


def _term(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("empty", "must not be blank")
    return value


Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT), BeforeValidator(_digits_to_int)]
Cursor = Annotated[str, AfterValidator(_cursor), Field(json_schema_extra={"pattern": CURSOR_PATTERN})]
Term = Annotated[str, Field(min_length=1, max_length=MAX_TERM), AfterValidator(_term)]
SortDirection = Literal["asc", "desc"]


class ReferenceQuery(QueryModel):
    """A reference read's query: unknown keys are refused (as for the Goals reads), no cross-field rule."""

    array_keys: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def cross_field_problems(cls, data: dict[str, Any]) -> list[Problem]:
        return []


_LIMIT = f"Items per page, 1 to {MAX_LIMIT}; Pipedrive's default is 100."
_CURSOR = "The `additional_data.next_cursor` of the previous page; omit it for the first page."
_DIRECTION = "The sorting direction; Pipedrive's default is `asc`."


class PipelinesQuery(ReferenceQuery):
    """The query of `GET /api/v2/pipelines`."""

    sort_by: Literal["id", "update_time", "add_time"] = Field(
        None, description="The field to sort by; Pipedrive's default is `id`."
    )
    sort_direction: SortDirection = Field(None, description=_DIRECTION)
    limit: Limit = Field(None, description=_LIMIT)
    cursor: Cursor = Field(None, description=_CURSOR)


class StagesQuery(ReferenceQuery):
    """The query of `GET /api/v2/stages`."""

    pipeline_id: QueryId = Field(
        None, description="Only the stages of this pipeline; omitted, the stages of every pipeline."
    )
    sort_by: Literal["id", "update_time", "add_time", "order_nr"] = Field(
        None, description="The field to sort by; Pipedrive's default is `id`."
    )
    sort_direction: SortDirection = Field(None, description=_DIRECTION)
    limit: Limit = Field(None, description=_LIMIT)
    cursor: Cursor = Field(None, description=_CURSOR)


class ActivityTypesQuery(ReferenceQuery):
    """`GET /api/v1/activityTypes` takes no parameter."""


class UsersQuery(ReferenceQuery):
    """`GET /api/v1/users` takes no parameter."""


class CurrenciesQuery(ReferenceQuery):
    """The query of `GET /api/v1/currencies`."""

    term: Term = Field(None, description="Only currencies whose name or code contains this text.")
