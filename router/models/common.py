"""Schemas shared by every provider: servers, transfer destinations, hooks (seed spec).

Router's extensions to `call.ringing` hooks (SPEC §12: caller lists, schedules,
attestation, the reject action) are in router/models/ringing.py.
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from router.models.languages import LANGUAGE_CODES
from router.models.ringing import (
    AttestationHookFilter,
    CallerNumberHookFilter,
    RejectPhoneNumberHookAction,
    ScheduleHookFilter,
)
from router.models.wire import Headers, SipUri, WireModel, check_number, for_api

ENDED_REASONS_ASSISTANT_REQUEST = (
    "assistant-request-failed",
    "assistant-request-returned-error",
    "assistant-request-returned-unspeakable-error",
    "assistant-request-returned-invalid-assistant",
    "assistant-request-returned-no-assistant",
    "assistant-request-returned-forwarding-phone-number",
)
EndedReasonFilterValue = Literal[
    "assistant-request-failed",
    "assistant-request-returned-error",
    "assistant-request-returned-unspeakable-error",
    "assistant-request-returned-invalid-assistant",
    "assistant-request-returned-no-assistant",
    "assistant-request-returned-forwarding-phone-number",
]


class BackoffPlan(WireModel):
    """How the assistant-request is retried."""

    type: Literal["fixed", "exponential"] = "fixed"
    max_retries: int = Field(default=0, ge=0, le=10)
    base_delay_seconds: float = Field(ge=0, le=10)
    excluded_status_codes: list[int] | None = None

    @field_validator("excluded_status_codes")
    @classmethod
    def _status_codes(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(not 100 <= code <= 599 for code in value):
            raise ValueError("excludedStatusCodes must be HTTP status codes (100-599)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _required(cls, data: Any) -> Any:
        # The spec lists all three as required; a missing one is a clear 400.
        if isinstance(data, dict):
            missing = [k for k in ("type", "maxRetries", "baseDelaySeconds") if k not in data]
            if missing:
                raise ValueError(f"backoffPlan needs {', '.join(missing)}")
        return data


class Server(WireModel):
    """Where assistant-request and status-update messages are sent."""

    timeout_seconds: float | None = Field(default=None, ge=1, le=300)
    credential_id: str | None = None
    static_ip_addresses_enabled: bool | None = None
    encrypted_paths: list[str] | None = None
    url: str | None = Field(default=None, max_length=2048)
    headers: Headers | None = None
    backoff_plan: BackoffPlan | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError("server.url must be an http:// or https:// URL")
        return value


class TextContent(WireModel):
    type: Literal["text"]
    text: str
    language: str

    @field_validator("language")
    @classmethod
    def _language(cls, value: str) -> str:
        if value not in LANGUAGE_CODES:
            raise ValueError("language must be an ISO 639-1 code from the spec's list")
        return value


class CustomMessage(WireModel):
    type: Literal["custom-message"]
    contents: list[TextContent] | None = None
    content: str | None = Field(default=None, max_length=1000)

    def text(self) -> str:
        """What is spoken: `contents` overrides `content`; its first item is the default."""
        if self.contents:
            return self.contents[0].text
        return self.content or ""


Message = str | CustomMessage


class ContextEngineeringPlanLastNMessages(WireModel):
    type: Literal["lastNMessages"]
    max_messages: float = Field(ge=0)


class ContextEngineeringPlanNone(WireModel):
    type: Literal["none"]


class ContextEngineeringPlanAll(WireModel):
    type: Literal["all"]


ContextEngineeringPlan = Annotated[
    ContextEngineeringPlanLastNMessages | ContextEngineeringPlanNone | ContextEngineeringPlanAll,
    Field(discriminator="type"),
]


class SummaryPlan(WireModel):
    messages: list[dict[str, Any]] | None = None
    enabled: bool | None = None
    timeout_seconds: float | None = Field(default=None, ge=1, le=60)


class TransferFallbackPlan(WireModel):
    message: Message
    end_call_enabled: bool = True


class TransferPlan(WireModel):
    mode: Literal[
        "blind-transfer",
        "blind-transfer-add-summary-to-sip-header",
        "warm-transfer-say-message",
        "warm-transfer-say-summary",
        "warm-transfer-twiml",
        "warm-transfer-wait-for-operator-to-speak-first-and-then-say-message",
        "warm-transfer-wait-for-operator-to-speak-first-and-then-say-summary",
        "warm-transfer-experimental",
    ]
    message: Message | None = None
    timeout: float = Field(default=60, ge=1, le=600)
    sip_verb: Literal["refer", "bye", "dial"] = "refer"
    dial_timeout: float = Field(default=60, ge=1, le=600)
    hold_audio_url: str | None = None
    transfer_complete_audio_url: str | None = None
    context_engineering_plan: ContextEngineeringPlan | None = None
    twiml: str | None = Field(default=None, max_length=4096)
    summary_plan: SummaryPlan | None = None
    sip_headers_in_refer_to_enabled: bool | None = None
    fallback_plan: TransferFallbackPlan | None = None


class TransferDestinationNumber(WireModel):
    """Transfer to a phone number."""

    type: Literal["number"]
    message: Message | None = None
    number_e164_check_enabled: bool = True
    number: str = Field(min_length=3, max_length=40)
    extension: str | None = Field(
        default=None, min_length=1, max_length=10, pattern=r"^[0-9#*wW]+$"
    )
    caller_id: str | None = Field(default=None, max_length=40)
    transfer_plan: TransferPlan | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _number_format(self, info: ValidationInfo) -> TransferDestinationNumber:
        check_number(self.number, self.number_e164_check_enabled, possible=for_api(info))
        return self


class TransferDestinationSip(WireModel):
    """Transfer to a SIP URI."""

    type: Literal["sip"]
    message: Message | None = None
    sip_uri: SipUri
    caller_id: str | None = Field(default=None, max_length=40)
    transfer_plan: TransferPlan | None = None
    sip_headers: Headers | None = None
    description: str | None = None


TransferDestination = Annotated[
    TransferDestinationNumber | TransferDestinationSip, Field(discriminator="type")
]


class TransferPhoneNumberHookAction(WireModel):
    type: Literal["transfer"]
    destination: TransferDestination | None = None


class SayPhoneNumberHookAction(WireModel):
    type: Literal["say"]
    exact: str = Field(max_length=4000)


HookAction = Annotated[
    TransferPhoneNumberHookAction | SayPhoneNumberHookAction, Field(discriminator="type")
]
# Router extension: a ringing hook may also reject the call (not answered).
RingingHookAction = Annotated[
    TransferPhoneNumberHookAction | SayPhoneNumberHookAction | RejectPhoneNumberHookAction,
    Field(discriminator="type"),
]


class PhoneNumberCallRingingHookFilter(WireModel):
    """Matches when the caller's number (without +) starts with one of the prefixes."""

    type: Literal["startsWith"]
    key: Literal["number"]
    starts_with: list[Annotated[str, Field(max_length=20)]] = Field(max_length=20)

    def matches(self, caller: str) -> bool:
        digits = caller.removeprefix("+")
        return any(digits.startswith(prefix.removeprefix("+")) for prefix in self.starts_with)


# Vapi's `startsWith`, and router's extensions: `oneOf` (by `key`) and `schedule`.
RingingHookFilter = Annotated[
    PhoneNumberCallRingingHookFilter
    | Annotated[CallerNumberHookFilter | AttestationHookFilter, Field(discriminator="key")]
    | ScheduleHookFilter,
    Field(discriminator="type"),
]
# The router extension filters: a hook holding one lists each filter it evaluates in
# the decision's trace (Vapi's `startsWith` alone traces as it always has).
EXTENSION_FILTERS = (CallerNumberHookFilter, AttestationHookFilter, ScheduleHookFilter)


class PhoneNumberCallEndingHookFilter(WireModel):
    """Matches when the call's ended reason is one of the listed reasons: the
    assistant-request ones, and router's `runtime-unavailable` (no runtime took the call:
    docs/runtimes.md)."""

    type: Literal["oneOf"]
    key: Literal["call.endedReason"]
    one_of: list[EndedReasonFilterValue | Literal["runtime-unavailable"]]


class PhoneNumberHookCallRinging(WireModel):
    on: Literal["call.ringing"]
    filters: list[RingingHookFilter] | None = None
    do: list[RingingHookAction]

    @cached_property
    def explains_filters(self) -> bool:
        """Whether the trace lists each filter evaluated: when one is a router extension.
        (Cached: read on every call of a hook with filters.)"""
        return any(isinstance(f, EXTENSION_FILTERS) for f in self.filters or ())


class PhoneNumberHookCallEnding(WireModel):
    on: Literal["call.ending"]
    filters: list[PhoneNumberCallEndingHookFilter] | None = None
    do: HookAction | None = None


Hook = Annotated[PhoneNumberHookCallRinging | PhoneNumberHookCallEnding, Field(discriminator="on")]


class SipAuthentication(WireModel):
    """Digest credentials an incoming SIP INVITE must answer with."""

    realm: str | None = None
    username: str = Field(min_length=20, max_length=40)
    password: str = Field(min_length=20, max_length=40)


class PaginationMeta(WireModel):
    items_per_page: int
    total_items: int
    current_page: int
    total_pages: int | None = None
    has_next_page: bool | None = None
    sort_order: Literal["ASC", "DESC"] | None = None
    items_beyond_retention: bool | None = None
    created_at_le: str | None = None
    created_at_ge: str | None = None
