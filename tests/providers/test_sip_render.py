"""The SIP edge's JSON answer for every decision, parsed back and compared whole."""

from __future__ import annotations

import json
from typing import Any

import pytest

from router.models.phone_numbers import RECORD_MODELS, AnyPhoneNumber
from router.pipeline.decision import (
    Connect,
    Decision,
    Outcome,
    Reject,
    Say,
    Transfer,
    parse_destination,
)
from router.pipeline.inbound_call import InboundCall
from router.providers.plugin import RenderContext
from router.providers.sip import SipProvider, header_lines

RUNTIME_URL = "wss://runtime.example.com/stream"
CALL_ID = "a84b4c76e66710@pc33.example.com~0123456789ab"
CTX = RenderContext(runtime_url=RUNTIME_URL, call_id=CALL_ID, public_base="")
CALLER = "+14155550123"


def make_number(**wire: Any) -> AnyPhoneNumber:
    """A `byo-phone-number` (no digest gate, so every decision renders as itself)."""
    base: dict[str, Any] = {
        "id": "pn-byo",
        "orgId": "org-1",
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-01-01T00:00:00Z",
        "provider": "byo-phone-number",
        "credentialId": "cred-trunk",
        "number": "+14155550100",
    }
    return RECORD_MODELS["byo-phone-number"].model_validate(base | wire)


def make_call(**fields: Any) -> InboundCall:
    base: dict[str, Any] = {
        "provider": "sip",
        "provider_call_id": CALL_ID,
        "from_number": CALLER,
        "to_number": "+14155550100",
        "received_at": 0.0,
        "params": {"sipCallId": "a84b4c76e66710@pc33.example.com"},
        "id": "router-call-1",
    }
    return InboundCall(**(base | fields))


def render(
    outcome: Outcome,
    *,
    route: Any = "assistant",
    ended_reason: Any = None,
    trace: tuple[str, ...] = ("assistantId",),
    number: AnyPhoneNumber | None = None,
    **call: Any,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    decision = Decision(outcome, route, ended_reason, trace)
    rendered = SipProvider().render(decision, make_call(**call), number or make_number(), CTX)
    assert rendered.status == 200
    assert rendered.content_type == "application/json"
    rendered.body.decode("ascii")  # every non-ASCII character arrives escaped
    body = json.loads(rendered.body)
    assert isinstance(body, dict)
    return body, rendered.warnings


def transfer(**destination: Any) -> Transfer:
    return Transfer.to(parse_destination(destination))


HEAD = {
    "callId": CALL_ID,
    "sipCallId": "a84b4c76e66710@pc33.example.com",
    "routerCallId": "router-call-1",
    "phoneNumberId": "pn-byo",
}


@pytest.mark.parametrize("target", ["assistant", "squad", "workflow"])
def test_connect_names_the_runtime_target_and_router_headers(target: Any) -> None:
    body, warnings = render(Connect(target, f"{target}-1"), route=target, trace=(f"{target}Id",))
    assert body == {
        "action": "connect",
        **HEAD,
        "target": target,
        "targetId": f"{target}-1",
        "runtime": "default",
        "runtimeKind": "stream",
        "runtimeUrl": RUNTIME_URL,
        "runtimeUri": None,
        "connectUrl": None,
        "headers": {
            "x-router-call-id": CALL_ID,
            "x-router-target": target,
            "x-router-target-id": f"{target}-1",
            "x-router-phone-number-id": "pn-byo",
            "x-router-org-id": "org-1",
        },
        "headerLines": (
            f"x-router-call-id: {CALL_ID}\r\n"
            f"x-router-target: {target}\r\n"
            f"x-router-target-id: {target}-1\r\n"
            "x-router-phone-number-id: pn-byo\r\n"
            "x-router-org-id: org-1\r\n"
        ),
        "route": target,
        "endedReason": None,
        "trace": [f"{target}Id"],
    }
    assert warnings == ()


def test_a_transient_target_has_no_target_id_and_is_read_from_the_call_record() -> None:
    body, _ = render(
        Connect("assistant", None, {"assistant": {"name": "x"}}),
        route="assistant-request",
        trace=("server:number", "assistant-request:ok", "response:assistant"),
    )
    assert body["targetId"] is None
    assert "x-router-target-id" not in body["headers"]
    assert "config" not in json.dumps(body)  # the transient config stays in the record
    assert body["route"] == "assistant-request"


def test_a_target_id_that_cannot_be_a_sip_header_value_is_dropped_not_cut() -> None:
    body, warnings = render(Connect("assistant", "asst\r\nVia: evil"))
    assert body["targetId"] == "asst\r\nVia: evil"  # JSON escapes it
    assert "x-router-target-id" not in body["headers"]
    assert warnings == ("header x-router-target-id dropped: control characters",)


def test_transfer_to_a_number_carries_extension_and_resolved_caller_id() -> None:
    body, _ = render(
        transfer(
            type="number",
            number="+14155550199",
            extension="1234#",
            callerId="{{ customer.number }}",
            transferPlan={"mode": "blind-transfer", "dialTimeout": 25, "sipVerb": "dial"},
        ),
        route="hook",
        ended_reason="call.ringing.hook-executed-transfer",
        trace=("hooks.ringing:matched[0]", "transfer"),
    )
    assert body == {
        "action": "transfer",
        **HEAD,
        "message": "Transferring the call now",
        "destination": {
            "type": "number",
            "number": "+14155550199",
            "extension": "1234#",
            "callerId": CALLER,
            "timeoutSeconds": 25,
            "sipVerb": "dial",
        },
        "route": "hook",
        "endedReason": "call.ringing.hook-executed-transfer",
        "trace": ["hooks.ringing:matched[0]", "transfer"],
    }


def test_transfer_to_sip_sends_sip_headers_as_x_headers() -> None:
    """`x-` is added unless present or a standard header; booleans are spelled as JSON."""
    body, _ = render(
        transfer(
            type="sip",
            sipUri="sip:oncall@pbx.example.com",
            message="",
            callerId="{{phoneNumber.number}}",
            sipHeaders={"Queue": "sales", "X-Priority": 2, "User-to-User": "abc", "vip": True},
        ),
        route="fallback",
        ended_reason="assistant-request-failed",
    )
    assert body["message"] == ""
    assert body["destination"] == {
        "type": "sip",
        "uri": "sip:oncall@pbx.example.com",
        "headers": {"x-Queue": "sales", "X-Priority": "2", "User-to-User": "abc", "x-vip": "true"},
        "headerLines": ("x-Queue: sales\r\nX-Priority: 2\r\nUser-to-User: abc\r\nx-vip: true\r\n"),
        "callerId": "+14155550100",
    }
    assert body["endedReason"] == "assistant-request-failed"


def test_control_characters_in_sip_header_values_are_removed() -> None:
    """Line breaks are refused where `sipHeaders` is validated; any other control character
    (a tab, a DEL) that reaches the answer is removed from the value, and said."""
    body, warnings = render(
        transfer(
            type="sip",
            sipUri="sip:oncall@pbx.example.com",
            sipHeaders={"Queue": "sa\x01les\x7f", "Tab": "a\tb", "Plain": "ok"},
        ),
        route="fallback",
        ended_reason="assistant-request-failed",
    )
    assert body["destination"]["headers"] == {
        "x-Queue": "sales",
        "x-Tab": "ab",
        "x-Plain": "ok",
    }
    assert body["destination"]["headerLines"] == "x-Queue: sales\r\nx-Tab: ab\r\nx-Plain: ok\r\n"
    assert sorted(warnings) == [
        "header x-Queue: control characters removed",
        "header x-Tab: control characters removed",
    ]


def test_a_header_name_that_is_no_sip_token_is_left_out_of_header_lines() -> None:
    """`headerLines` is appended to the INVITE as is: a name with a space or a colon (which
    `sipHeaders` validation refuses already) would make another header of its value."""
    warnings: list[str] = []
    lines = header_lines({"x-Bad Name": "v", "Via:x": "w", "x-Good": "o'k"}, warnings)
    assert lines == "x-Good: o'k\r\n"
    assert warnings == [
        "header 'x-Bad Name' left out of headerLines: not a SIP header name",
        "header 'Via:x' left out of headerLines: not a SIP header name",
    ]


@pytest.mark.parametrize(
    ("caller_id", "from_number", "expected"),
    [
        ("{{customer.number}}", "anonymous", None),
        ("+14155550000", CALLER, "+14155550000"),
        ("Front Desk", CALLER, "Front Desk"),
        (None, CALLER, None),
    ],
)
def test_caller_id_literals_pass_and_a_withheld_caller_is_left_to_the_edge(
    caller_id: str | None, from_number: str, expected: str | None
) -> None:
    outcome = transfer(type="number", number="+14155550199", callerId=caller_id)
    body, _ = render(outcome, from_number=from_number)
    assert body["destination"]["callerId"] == expected


def test_say_speaks_then_hangs_up() -> None:
    body, _ = render(
        Say('Closed "today" </Say> \u00e9\n'),
        route="say",
        ended_reason="assistant-request-returned-error",
        trace=("response:error", "speak-error"),
    )
    assert body == {
        "action": "say",
        **HEAD,
        "text": 'Closed "today" </Say> \u00e9\n',
        "hangup": True,
        "route": "say",
        "endedReason": "assistant-request-returned-error",
        "trace": ["response:error", "speak-error"],
    }


def test_a_blocked_number_is_rejected_with_403() -> None:
    body, _ = render(
        Reject(), route="reject", ended_reason="phone-number-blocked", trace=("blocked",)
    )
    assert body == {
        "action": "reject",
        **HEAD,
        "status": 403,
        "reason": "Forbidden",
        "route": "reject",
        "endedReason": "phone-number-blocked",
        "trace": ["blocked"],
    }


def test_a_ringing_reject_hook_declines_with_603() -> None:
    """The number's owner declines this call: `603 Decline`, with the hook's reason."""
    trace = ("hooks.ringing:matched[0]", "reject")
    body, _ = render(
        Reject(), route="hook", ended_reason="call.ringing.hook-executed-reject", trace=trace
    )
    assert body == {
        "action": "reject",
        **HEAD,
        "status": 603,
        "reason": "Decline",
        "route": "hook",
        "endedReason": "call.ringing.hook-executed-reject",
        "trace": list(trace),
    }


def test_an_unknown_number_is_rejected_with_404() -> None:
    rendered = SipProvider().reject()
    assert (rendered.status, rendered.content_type) == (200, "application/json")
    assert json.loads(rendered.body) == {
        "action": "reject",
        "status": 404,
        "reason": "Not Found",
        "route": None,
        "endedReason": None,
        "trace": ["unknown-number"],
    }


def test_a_call_not_parsed_by_the_edge_renders_without_a_digest_gate() -> None:
    """`router simulate --render sip` passes a call of provider `vapi`: no challenge."""
    vapi = RECORD_MODELS["vapi"].model_validate(
        {
            "id": "pn-vapi",
            "orgId": "org-1",
            "createdAt": "2024-01-01T00:00:00Z",
            "updatedAt": "2024-01-01T00:00:00Z",
            "provider": "vapi",
            "sipUri": "sip:support@sip.example.com",
            "authentication": {"username": "u" * 20, "password": "p" * 20},
        }
    )
    body, _ = render(Connect("assistant", "a"), number=vapi, provider="vapi", params={})
    assert body["action"] == "connect"
    assert body["sipCallId"] == CALL_ID
