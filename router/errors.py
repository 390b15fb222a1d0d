"""Errors that carry data; translated to HTTP only at the edge (router.api.edge)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import ValidationError


class ApiError(Exception):
    """An error a client caused or can act on; rendered in the NestJS shape Vapi clients parse."""

    def __init__(self, status: int, message: str | list[str]) -> None:
        super().__init__(message if isinstance(message, str) else "; ".join(message))
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            "error": HTTPStatus(self.status).phrase,
            "message": self.message,
        }


def bad_request(*messages: str) -> ApiError:
    return ApiError(400, list(messages))


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


_UNSET = object()
# Labels pydantic gives the members of a plain union (`str | CustomMessage`): builtin type
# names, and model class names, which are capitalised where wire fields are camelCase.
_MEMBER_LABELS = frozenset({"str", "int", "float", "bool", "none"})
_TAG_FIELDS = ("type", "on", "provider", "key")


def _child(node: Any, key: int | str) -> Any:
    if isinstance(key, int):
        return node[key] if isinstance(node, list) and 0 <= key < len(node) else _UNSET
    return node.get(key, _UNSET) if isinstance(node, dict) else _UNSET


def _is_union_tag(node: Any, item: str, following: int | str) -> bool:
    """Whether `item` is the tag pydantic puts after a discriminated union, not a field.

    The tag repeats the value of the object's discriminator (`fallbackDestination.number.foo`
    is `foo` of the destination whose type is "number"); a field of the same name is one
    the next segment of the location goes into (`startsWith[3]` of a startsWith filter).
    """
    if not isinstance(node, dict) or not any(node.get(f) == item for f in _TAG_FIELDS):
        return False
    value = node.get(item, _UNSET)
    into_field = (isinstance(following, str) and isinstance(value, dict)) or (
        isinstance(following, int) and isinstance(value, list)
    )
    return not into_field


def _path(
    loc: tuple[int | str, ...],
    data: Any = _UNSET,
    *,
    at_union: bool = False,
    missing: bool = False,
) -> str:
    """The field's path as clients wrote it (`hooks[0].do`), without pydantic's union labels.

    A location may end in a union's tag: an object's own error (the tag is not one of its
    fields), or, with `at_union`, the error of a union nested in it (a `oneOf` filter's
    `key`, inside the filters' `type`): the path ends at the object. With `missing`, the
    last item is the absent field, even when it is named like a tag (`oneOf`).
    """
    parts: list[str] = []
    node = data
    for index, item in enumerate(loc):
        if (
            index + 1 == len(loc)
            and not missing
            and isinstance(item, str)
            and isinstance(node, dict)
            and any(node.get(f) == item for f in _TAG_FIELDS)
            and (at_union or item not in node)
        ):
            break
        if isinstance(item, int):
            parts.append(f"[{item}]")
            node = _child(node, item)
        elif item.startswith(("function-", "tagged-union")) or "[" in item:
            continue  # pydantic's wrapper names are not fields
        elif item in _MEMBER_LABELS or item[:1].isupper():
            continue  # the member of a plain union that was tried
        elif index + 1 < len(loc) and _is_union_tag(node, item, loc[index + 1]):
            continue
        else:
            parts.append(("." if parts else "") + item)
            node = _child(node, item)
    return "".join(parts) or "body"


_TEMPLATES: dict[str, str] = {
    "missing": "{path} is required",
    "extra_forbidden": "property {path} should not exist",
    "string_type": "{path} must be a string",
    "bool_type": "{path} must be a boolean value",
    "bool_parsing": "{path} must be a boolean value",
    "int_type": "{path} must be an integer number",
    "int_parsing": "{path} must be an integer number",
    "int_from_float": "{path} must be an integer number",
    "float_type": "{path} must be a number",
    "float_parsing": "{path} must be a number",
    "list_type": "{path} must be an array",
    "dict_type": "{path} must be an object",
    "model_type": "{path} must be an object",
    "model_attributes_type": "{path} must be an object",
    "datetime_type": "{path} must be a valid ISO 8601 date string",
    "datetime_parsing": "{path} must be a valid ISO 8601 date string",
    "datetime_from_date_parsing": "{path} must be a valid ISO 8601 date string",
    "string_too_long": "{path} must be shorter than or equal to {max_length} characters",
    "string_too_short": "{path} must be longer than or equal to {min_length} characters",
    "too_long": "{path} must contain no more than {max_length} elements",
    "too_short": "{path} must contain at least {min_length} elements",
    "less_than_equal": "{path} must not be greater than {le}",
    "greater_than_equal": "{path} must not be less than {ge}",
    "greater_than": "{path} must be greater than {gt}",
    "less_than": "{path} must be less than {lt}",
    "string_pattern_mismatch": "{path} must match the pattern {pattern}",
    "literal_error": "{path} must be one of the following values: {expected}",
    "union_tag_invalid": (
        "{path}.{discriminator} must be one of the following values: {expected_tags}"
    ),
    "union_tag_not_found": "{path}.{discriminator} is required",
}


def validation_messages(exc: ValidationError, prefix: str = "", data: Any = _UNSET) -> list[str]:
    """NestJS-style messages (`name must be shorter than or equal to 40 characters`).

    With the validated `data`, paths leave out the tags of discriminated unions.
    """
    messages: list[str] = []
    for error in exc.errors(include_url=False):
        kind = error["type"]
        loc = tuple(error["loc"])
        path = _path(loc, data, at_union=kind.startswith("union_tag"), missing=kind == "missing")
        if prefix:
            path = prefix if path == "body" else f"{prefix}.{path}"
        ctx = {k: v for k, v in (error.get("ctx") or {}).items()}
        if "discriminator" in ctx:
            ctx["discriminator"] = str(ctx["discriminator"]).strip("'")
        template = _TEMPLATES.get(error["type"])
        if error["type"] == "value_error":
            reason = str(ctx.get("error", error["msg"])).removeprefix("Value error, ")
            text = reason if path == "body" or reason.startswith(path) else f"{path}: {reason}"
        elif template is not None:
            try:
                text = template.format(path=path, **ctx)
            except (KeyError, IndexError):
                text = f"{path}: {error['msg']}"
        else:
            text = f"{path}: {error['msg']}"
        if text not in messages:
            messages.append(text)
    return messages
