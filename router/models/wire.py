"""Shared pydantic configuration: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

import phonenumbers
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo
from pydantic.alias_generators import to_camel

# ASCII digits only: `\d` would take any script's digits (Arabic-Indic, Devanagari...).
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
ALNUM_NUMBER = re.compile(r"^\+?[a-zA-Z0-9]+$")
# No whitespace, brackets, quotes or control characters: a SIP URI goes into TwiML and SIP headers.
SIP_URI = re.compile(r"^sips?:[^@\s<>\"\x00-\x1f\x7f]+@[^\s<>\"\x00-\x1f\x7f]+$", re.IGNORECASE)
# RFC 7230 token characters: what a header name may be made of.
HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class WireModel(BaseModel):
    """A request body: unknown properties are refused, as Vapi's NestJS whitelist does."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        str_strip_whitespace=False,
    )

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict as clients see it (camelCase, unset optionals left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class OpenModel(WireModel):
    """A stored or response shape: tolerant of fields written by a newer version."""

    model_config = ConfigDict(extra="ignore")


def _check_sip_uri(value: str) -> str:
    if not SIP_URI.fullmatch(value):
        raise ValueError("must be a SIP URI like sip:user@host")
    return value


def _check_header_value(value: str) -> str:
    if "\r" in value or "\n" in value or "\x00" in value:
        raise ValueError("header values must not contain line breaks")
    return value


def _check_headers(value: dict[str, Any]) -> dict[str, Any]:
    for name, item in value.items():
        if not HEADER_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid header name")
        if not isinstance(item, str | int | float | bool):
            raise ValueError(f"header {name!r} must be a string, number or boolean")
        _check_header_value(str(item))
    return value


SipUri = Annotated[str, AfterValidator(_check_sip_uri)]
Headers = Annotated[dict[str, Any], AfterValidator(_check_headers)]


def check_number(value: str, e164: bool, *, possible: bool = False) -> str:
    """Vapi's rule for `number`: E.164 unless the check is disabled, then alphanumeric.
    `possible` (numbers saved through the API): also a number libphonenumber finds
    possible, an assigned country code and a length that country's numbers have."""
    if e164:
        if not E164.fullmatch(value) or (possible and not possible_number(value)):
            raise ValueError(
                "number must be a valid phone number in E.164 format (e.g. +14155551234); "
                "set numberE164CheckEnabled to false for other numbers"
            )
    elif not ALNUM_NUMBER.fullmatch(value):
        raise ValueError("number must contain only letters and digits, optionally after a +")
    return value


def possible_number(value: str) -> bool:
    """An E.164 number (`+` and ASCII digits) with an assigned country code and a possible
    length for it (libphonenumber). Not on the webhook path: it is for numbers saved."""
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.is_possible_number(parsed)


def saved_e164(value: str) -> str:
    """A provider number as the API takes it: with its `+`, as E.164 writes it (a number
    without one is not given one: `4155552671` would become a Swiss number), and possible."""
    if not value.startswith("+"):
        raise ValueError("number must start with + and its country code (E.164, e.g. +14155551234)")
    if not (E164.fullmatch(value) and possible_number(value)):
        raise ValueError(
            "number must be a valid phone number in E.164 format (e.g. +14155551234): "
            "an assigned country code and a possible length"
        )
    return value


def for_api(info: ValidationInfo) -> bool:
    """Whether a model is validating an API request (`validate_request`), not a stored or
    provider document: the stricter checks of saved input apply."""
    return bool(info.context and info.context.get(API_INPUT))


API_INPUT: Final = "api-input"


def normalize_e164(value: str) -> str:
    """A provider number in E.164 form: `14155551234` and `+14155551234` are one number."""
    candidate = value if value.startswith("+") else f"+{value}"
    if not E164.fullmatch(candidate):
        raise ValueError("number must be a valid phone number in E.164 format (e.g. +14155551234)")
    return candidate
