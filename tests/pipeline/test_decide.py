"""`decide` over every branch of SPEC §5, with the assistant-request boundary faked."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from router.models.common import Server
from router.models.phone_numbers import AnyPhoneNumber
from router.pipeline import decision as d
from router.pipeline.decide import AssistantRequestResult, decide
from router.pipeline.decision import (
    Connect,
    Decision,
    EndedReason,
    FailureReason,
    Outcome,
    Reject,
    Route,
    Say,
    Transfer,
    parse_destination,
)
from router.pipeline.inbound_call import InboundCall

from .helpers import make_call, make_number

APOLOGY = "Sorry, we cannot take your call."
NUM = {"type": "number", "number": "+14155550199"}
SIP = {"type": "sip", "sipUri": "sip:desk@example.com"}
FALLBACK = {"type": "number", "number": "+14155550188", "message": "One moment."}
NUMBER_SERVER = {"url": "https://number.example.com/hook"}
ORG_SERVER = Server(url="https://org.example.com/hook")


def ringing(*do: dict[str, Any], starts_with: list[list[str]] | None = None) -> dict[str, Any]:
    hook: dict[str, Any] = {"on": "call.ringing", "do": list(do)}
    if starts_with is not None:
        hook["filters"] = [
            {"type": "startsWith", "key": "number", "startsWith": prefixes}
            for prefixes in starts_with
        ]
    return hook


def ending(
    do: dict[str, Any] | None = None, one_of: list[list[str]] | None = None
) -> dict[str, Any]:
    hook: dict[str, Any] = {"on": "call.ending"}
    if do is not None:
        hook["do"] = do
    if one_of is not None:
        hook["filters"] = [
            {"type": "oneOf", "key": "call.endedReason", "oneOf": reasons} for reasons in one_of
        ]
    return hook


def say(text: str) -> dict[str, Any]:
    return {"type": "say", "exact": text}


def transfer(destination: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "transfer"} | ({"destination": destination} if destination else {})


def to(destination: dict[str, Any], message: str = d.DEFAULT_TRANSFER_MESSAGE) -> Transfer:
    return Transfer(parse_destination(destination), message)


def ok(body: dict[str, Any]) -> AssistantRequestResult:
    return AssistantRequestResult("ok", None, body, attempts=1, latency_ms=12.5, http_status=200)


def failed(reason: str = "timeout") -> AssistantRequestResult:
    return AssistantRequestResult("failed", reason, None, attempts=2, latency_ms=40.0)


ASKED = ["server:number", "assistant-request:ok"]


@dataclass
class Case:
    number: dict[str, Any]
    outcome: Outcome
    route: Route
    ended: EndedReason | None
    trace: list[str]
    result: AssistantRequestResult | None = None  # None: the server must not be asked
    failure: FailureReason | None = None
    org_server: Server | None = None
    call: dict[str, Any] = field(default_factory=dict)


CASES = {
    # 1. blocked
    "blocked number rejects before anything else": Case(
        {"status": "blocked", "assistantId": "a1", "hooks": [ringing(say("hi"))]},
        Reject(),
        "reject",
        d.BLOCKED,
        ["blocked"],
    ),
    # 2. call.ringing hooks
    "ringing hook without filters says to every caller and hangs up": Case(
        {"hooks": [ringing(say("We are closed."))], "assistantId": "a1"},
        Say("We are closed."),
        "hook",
        d.RINGING_SAY,
        ["hooks.ringing:matched[0]", "say"],
    ),
    "ringing hook transfer speaks the default message then transfers": Case(
        {"hooks": [ringing(transfer(NUM))]},
        to(NUM),
        "hook",
        d.RINGING_TRANSFER,
        ["hooks.ringing:matched[0]", "transfer"],
    ),
    "ringing hook filter on caller prefix (with or without +) matches": Case(
        {"hooks": [ringing(say("UK"), starts_with=[["44", "+33"]])]},
        Say("UK"),
        "hook",
        d.RINGING_SAY,
        ["hooks.ringing:matched[0]", "say"],
        call={"from_number": "+442071838750"},
    ),
    "ringing hook whose filter does not match the caller is skipped": Case(
        {"hooks": [ringing(say("UK"), starts_with=[["44"]])], "assistantId": "a1"},
        Connect("assistant", "a1"),
        "assistant",
        None,
        ["hooks.ringing:unmatched[0]", "assistantId"],
    ),
    "ringing hook matches only when every filter matches": Case(
        {"hooks": [ringing(say("x"), starts_with=[["1"], ["1212"]])], "assistantId": "a1"},
        Connect("assistant", "a1"),
        "assistant",
        None,
        ["hooks.ringing:unmatched[0]", "assistantId"],
    ),
    "anonymous caller matches no prefix filter": Case(
        {"hooks": [ringing(say("x"), starts_with=[["1"]])], "assistantId": "a1"},
        Connect("assistant", "a1"),
        "assistant",
        None,
        ["hooks.ringing:unmatched[0]", "assistantId"],
        call={"from_number": "anonymous"},
    ),
    "a ringing hook with an empty filters list matches every caller": Case(
        {"hooks": [ringing(say("all"), starts_with=[])]},
        Say("all"),
        "hook",
        d.RINGING_SAY,
        ["hooks.ringing:matched[0]", "say"],
    ),
    "only the first action of a ringing hook runs": Case(
        {"hooks": [ringing(say("first"), say("second"), transfer(NUM))]},
        Say("first"),
        "hook",
        d.RINGING_SAY,
        ["hooks.ringing:matched[0]", "say"],
    ),
    "first matching ringing hook wins; trace indexes count every hook": Case(
        {
            "hooks": [
                ending(say("e")),
                ringing(say("a"), starts_with=[["9"]]),
                ringing(say("b")),
                ringing(say("c")),
            ]
        },
        Say("b"),
        "hook",
        d.RINGING_SAY,
        ["hooks.ringing:unmatched[1]", "hooks.ringing:matched[2]", "say"],
    ),
    "ringing transfer without destination is a no-op and the next hook runs": Case(
        {"hooks": [ringing(transfer()), ringing(say("next"))]},
        Say("next"),
        "hook",
        d.RINGING_SAY,
        ["hooks.ringing:noop[0]", "hooks.ringing:matched[1]", "say"],
    ),
    "ringing hook with an empty do list is a no-op": Case(
        {"hooks": [ringing()], "assistantId": "a1"},
        Connect("assistant", "a1"),
        "assistant",
        None,
        ["hooks.ringing:noop[0]", "assistantId"],
    ),
    "ringing say with empty text hangs up silently": Case(
        {"hooks": [ringing(say(""))]},
        Say(""),
        "hook",
        d.RINGING_SAY,
        ["hooks.ringing:matched[0]", "say"],
    ),
    # 3. static targets
    "assistantId wins over squadId and workflowId and no server is asked": Case(
        {"assistantId": "a1", "squadId": "s1", "workflowId": "w1", "server": NUMBER_SERVER},
        Connect("assistant", "a1"),
        "assistant",
        None,
        ["assistantId"],
    ),
    "squadId wins over workflowId": Case(
        {"squadId": "s1", "workflowId": "w1"},
        Connect("squad", "s1"),
        "squad",
        None,
        ["squadId"],
    ),
    "workflowId connects the workflow": Case(
        {"workflowId": "w1"},
        Connect("workflow", "w1"),
        "workflow",
        None,
        ["workflowId"],
    ),
    "an empty-string assistantId counts as unset": Case(
        {"assistantId": ""},
        Say(APOLOGY),
        "say",
        d.NO_SERVER,
        ["server:none", f"failure:{d.NO_SERVER}", "apology"],
        failure=d.NO_SERVER,
    ),
    # 4. which server
    "the number's server is asked before the org's": Case(
        {"server": NUMBER_SERVER},
        Connect("assistant", "a9"),
        "assistant-request",
        None,
        [*ASKED, "response:assistantId"],
        result=ok({"assistantId": "a9"}),
        org_server=ORG_SERVER,
    ),
    "the org's server is asked when the number's server has no url": Case(
        {"server": {"timeoutSeconds": 5}},
        Connect("assistant", "a9"),
        "assistant-request",
        None,
        ["server:org", "assistant-request:ok", "response:assistantId"],
        result=ok({"assistantId": "a9"}),
        org_server=ORG_SERVER,
    ),
    "no server anywhere apologises with the no-server reason": Case(
        {},
        Say(APOLOGY),
        "say",
        d.NO_SERVER,
        ["server:none", f"failure:{d.NO_SERVER}", "apology"],
        failure=d.NO_SERVER,
        org_server=Server(timeout_seconds=3),
    ),
    "no server transfers to fallbackDestination": Case(
        {"fallbackDestination": FALLBACK},
        to(FALLBACK, "One moment."),
        "fallback",
        d.NO_SERVER,
        ["server:none", f"failure:{d.NO_SERVER}", "fallbackDestination"],
        failure=d.NO_SERVER,
    ),
    # 4. classification of the response
    "a failed request apologises": Case(
        {"server": NUMBER_SERVER},
        Say(APOLOGY),
        "say",
        d.FAILED,
        ["server:number", "assistant-request:timeout", f"failure:{d.FAILED}", "apology"],
        result=failed("timeout"),
        failure=d.FAILED,
    ),
    "a failed request transfers to fallbackDestination": Case(
        {"server": NUMBER_SERVER, "fallbackDestination": FALLBACK},
        to(FALLBACK, "One moment."),
        "fallback",
        d.FAILED,
        [
            "server:number",
            "assistant-request:http-503",
            f"failure:{d.FAILED}",
            "fallbackDestination",
        ],
        result=failed("http-503"),
        failure=d.FAILED,
    ),
    "a returned error is spoken, and fallbackDestination is not used": Case(
        {"server": NUMBER_SERVER, "fallbackDestination": FALLBACK},
        Say("We do not take calls from you."),
        "say",
        d.RETURNED_ERROR,
        [*ASKED, "response:error", f"failure:{d.RETURNED_ERROR}", "speak-error"],
        result=ok({"error": "We do not take calls from you.", "assistantId": "a1"}),
        failure=d.RETURNED_ERROR,
    ),
    "an error of exactly 1000 characters is spoken": Case(
        {"server": NUMBER_SERVER},
        Say("e" * 1000),
        "say",
        d.RETURNED_ERROR,
        [*ASKED, "response:error", f"failure:{d.RETURNED_ERROR}", "speak-error"],
        result=ok({"error": "e" * 1000}),
        failure=d.RETURNED_ERROR,
    ),
    **{
        f"an unspeakable error ({label}) hangs up silently": Case(
            {"server": NUMBER_SERVER, "fallbackDestination": FALLBACK},
            Say(""),
            "say",
            d.UNSPEAKABLE_ERROR,
            [
                *ASKED,
                "response:unspeakable-error",
                f"failure:{d.UNSPEAKABLE_ERROR}",
                "hang-up-silently",
            ],
            result=ok({"error": value}),
            failure=d.UNSPEAKABLE_ERROR,
        )
        for label, value in [
            ("empty", ""),
            ("blank", "   "),
            ("too long", "e" * 1001),
            ("number", 42),
            ("object", {"message": "x"}),
            ("false", False),
        ]
    },
    "error: null counts as absent": Case(
        {"server": NUMBER_SERVER},
        Connect("assistant", "a1"),
        "assistant-request",
        None,
        [*ASKED, "response:assistantId"],
        result=ok({"error": None, "assistantId": "a1"}),
    ),
    "a destination forwards (default message), ignoring assistant fields": Case(
        {"server": NUMBER_SERVER, "fallbackDestination": FALLBACK},
        to(NUM),
        "assistant-request",
        d.FORWARDING,
        [*ASKED, "response:destination", f"failure:{d.FORWARDING}", "forward"],
        result=ok({"destination": NUM, "assistantId": "a1"}),
        failure=d.FORWARDING,
    ),
    "a destination with message '' forwards silently": Case(
        {"server": NUMBER_SERVER},
        to(NUM | {"message": ""}, ""),
        "assistant-request",
        d.FORWARDING,
        [*ASKED, "response:destination", f"failure:{d.FORWARDING}", "forward"],
        result=ok({"destination": NUM | {"message": ""}}),
        failure=d.FORWARDING,
    ),
    "a SIP destination with a custom message speaks its text": Case(
        {"server": NUMBER_SERVER},
        to(SIP | {"message": {"type": "custom-message", "content": "Hold on"}}, "Hold on"),
        "assistant-request",
        d.FORWARDING,
        [*ASKED, "response:destination", f"failure:{d.FORWARDING}", "forward"],
        result=ok(
            {"destination": SIP | {"message": {"type": "custom-message", "content": "Hold on"}}}
        ),
        failure=d.FORWARDING,
    ),
    "an invalid destination is an invalid assistant, even beside an assistantId": Case(
        {"server": NUMBER_SERVER, "fallbackDestination": FALLBACK},
        to(FALLBACK, "One moment."),
        "fallback",
        d.INVALID_ASSISTANT,
        [
            *ASKED,
            "response:invalid-destination",
            f"failure:{d.INVALID_ASSISTANT}",
            "fallbackDestination",
        ],
        result=ok(
            {"destination": {"type": "number", "number": "not a number"}, "assistantId": "a1"}
        ),
        failure=d.INVALID_ASSISTANT,
    ),
    "destination: null counts as absent": Case(
        {"server": NUMBER_SERVER},
        Connect("squad", "s1"),
        "assistant-request",
        None,
        [*ASKED, "response:squadId"],
        result=ok({"destination": None, "squadId": "s1"}),
    ),
    "a transient assistant with overrides connects with its config": Case(
        {"server": NUMBER_SERVER},
        Connect("assistant", None, {"assistant": {"name": "t"}, "assistantOverrides": {"x": 1}}),
        "assistant-request",
        None,
        [*ASKED, "response:assistant"],
        result=ok({"assistant": {"name": "t"}, "assistantOverrides": {"x": 1}, "unknown": 1}),
    ),
    "assistantId carries its overrides": Case(
        {"server": NUMBER_SERVER},
        Connect("assistant", "a1", {"assistantOverrides": {"variableValues": {"n": "Ann"}}}),
        "assistant-request",
        None,
        [*ASKED, "response:assistantId"],
        result=ok({"assistantId": "a1", "assistantOverrides": {"variableValues": {"n": "Ann"}}}),
    ),
    "assistantId wins over a transient squad in the response": Case(
        {"server": NUMBER_SERVER},
        Connect("assistant", "a1", {}),
        "assistant-request",
        None,
        [*ASKED, "response:assistantId"],
        result=ok({"squad": {"members": []}, "assistantId": "a1"}),
    ),
    "a transient squad connects": Case(
        {"server": NUMBER_SERVER},
        Connect("squad", None, {"squad": {"members": []}, "squadOverrides": {}}),
        "assistant-request",
        None,
        [*ASKED, "response:squad"],
        result=ok({"squad": {"members": []}, "squadOverrides": {}}),
    ),
    "a workflowId from the server connects the workflow": Case(
        {"server": NUMBER_SERVER},
        Connect("workflow", "w1"),
        "assistant-request",
        None,
        [*ASKED, "response:workflowId"],
        result=ok({"workflowId": "w1"}),
    ),
    "a transient workflow connects": Case(
        {"server": NUMBER_SERVER},
        Connect("workflow", None, {"workflow": {"nodes": []}}),
        "assistant-request",
        None,
        [*ASKED, "response:workflow"],
        result=ok({"workflow": {"nodes": []}}),
    ),
    **{
        f"a wrongly shaped {key} ({value!r}) is an invalid assistant": Case(
            {"server": NUMBER_SERVER},
            Say(APOLOGY),
            "say",
            d.INVALID_ASSISTANT,
            [*ASKED, f"response:invalid:{key}", f"failure:{d.INVALID_ASSISTANT}", "apology"],
            result=ok({"assistantId": "a1", key: value} if key != "assistantId" else {key: value}),
            failure=d.INVALID_ASSISTANT,
        )
        for key, value in [
            ("assistantId", 5),
            ("assistantId", ""),
            ("squadId", ["s"]),
            ("assistant", "a1"),
            ("workflow", []),
            ("assistantOverrides", "x"),
        ]
    },
    **{
        f"a response with nothing usable ({label}) is no-assistant": Case(
            {"server": NUMBER_SERVER},
            Say(APOLOGY),
            "say",
            d.NO_ASSISTANT,
            [*ASKED, "response:empty", f"failure:{d.NO_ASSISTANT}", "apology"],
            result=ok(body),
            failure=d.NO_ASSISTANT,
        )
        for label, body in [
            ("{}", dict[str, Any]()),
            ("overrides only", {"assistantOverrides": {}}),
            ("nulls", {"assistantId": None}),
            ("unknown keys", {"hello": "world"}),
        ]
    },
    # 5. call.ending hooks
    "an ending hook whose filter lists the reason runs instead of the fallback": Case(
        {
            "server": NUMBER_SERVER,
            "fallbackDestination": FALLBACK,
            "hooks": [ending(say("Down."), one_of=[[d.FAILED, d.NO_ASSISTANT]])],
        },
        Say("Down."),
        "hook",
        d.ENDING_SAY,
        [
            "server:number",
            "assistant-request:transport",
            f"failure:{d.FAILED}",
            "hooks.ending:matched[0]",
            "say",
        ],
        result=failed("transport"),
        failure=d.FAILED,
    ),
    "an ending hook whose filter lacks the reason is skipped": Case(
        {"server": NUMBER_SERVER, "hooks": [ending(say("x"), one_of=[[d.NO_ASSISTANT]])]},
        Say(APOLOGY),
        "say",
        d.FAILED,
        [
            "server:number",
            "assistant-request:timeout",
            f"failure:{d.FAILED}",
            "hooks.ending:unmatched[0]",
            "apology",
        ],
        result=failed(),
        failure=d.FAILED,
    ),
    "an ending hook matches only when every filter lists the reason": Case(
        {
            "server": NUMBER_SERVER,
            "hooks": [ending(say("x"), one_of=[[d.NO_ASSISTANT, d.FAILED], [d.FAILED]])],
        },
        Say(APOLOGY),
        "say",
        d.NO_ASSISTANT,
        [
            *ASKED,
            "response:empty",
            f"failure:{d.NO_ASSISTANT}",
            "hooks.ending:unmatched[0]",
            "apology",
        ],
        result=ok({}),
        failure=d.NO_ASSISTANT,
    ),
    "an unfiltered ending hook catches the no-server reason and transfers": Case(
        {"hooks": [ending(transfer(SIP))]},
        to(SIP),
        "hook",
        d.ENDING_TRANSFER,
        ["server:none", f"failure:{d.NO_SERVER}", "hooks.ending:matched[0]", "transfer"],
        failure=d.NO_SERVER,
    ),
    "an unfiltered ending hook replaces speaking the server's error": Case(
        {"server": NUMBER_SERVER, "hooks": [ending(say("Bye."))]},
        Say("Bye."),
        "hook",
        d.ENDING_SAY,
        [*ASKED, "response:error", f"failure:{d.RETURNED_ERROR}", "hooks.ending:matched[0]", "say"],
        result=ok({"error": "No."}),
        failure=d.RETURNED_ERROR,
    ),
    "an unfiltered ending hook does not override a forwarding": Case(
        {"server": NUMBER_SERVER, "hooks": [ending(say("x")), ending(say("y"), one_of=[])]},
        to(NUM),
        "assistant-request",
        d.FORWARDING,
        [
            *ASKED,
            "response:destination",
            f"failure:{d.FORWARDING}",
            "hooks.ending:unmatched[0]",
            "hooks.ending:unmatched[1]",
            "forward",
        ],
        result=ok({"destination": NUM}),
        failure=d.FORWARDING,
    ),
    "an ending hook filtered on forwarding overrides the forwarding": Case(
        {"server": NUMBER_SERVER, "hooks": [ending(transfer(SIP), one_of=[[d.FORWARDING]])]},
        to(SIP),
        "hook",
        d.ENDING_TRANSFER,
        [
            *ASKED,
            "response:destination",
            f"failure:{d.FORWARDING}",
            "hooks.ending:matched[0]",
            "transfer",
        ],
        result=ok({"destination": NUM}),
        failure=d.FORWARDING,
    ),
    "ending hooks without do, or transferring nowhere, are skipped for the next": Case(
        {"server": NUMBER_SERVER, "hooks": [ending(), ending(transfer()), ending(say("third"))]},
        Say("third"),
        "hook",
        d.ENDING_SAY,
        [
            "server:number",
            "assistant-request:non-json",
            f"failure:{d.FAILED}",
            "hooks.ending:noop[0]",
            "hooks.ending:noop[1]",
            "hooks.ending:matched[2]",
            "say",
        ],
        result=failed("non-json"),
        failure=d.FAILED,
    ),
    "ending hooks do not run when the server names an assistant": Case(
        {"server": NUMBER_SERVER, "hooks": [ending(say("x"))]},
        Connect("assistant", "a1"),
        "assistant-request",
        None,
        [*ASKED, "response:assistantId"],
        result=ok({"assistantId": "a1"}),
    ),
}


class FakeAssistantRequest:
    """The injected boundary: returns a canned result and records what it was asked."""

    def __init__(self, result: AssistantRequestResult | None) -> None:
        self.result = result
        self.asked: list[Server] = []

    async def __call__(
        self, server: Server, number: AnyPhoneNumber, call: InboundCall
    ) -> AssistantRequestResult:
        self.asked.append(server)
        assert self.result is not None, "this path must not send an assistant-request"
        return self.result


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_decide(case: Case) -> None:
    """Each SPEC §5 path yields its outcome, route, ended reason and trace, and survives
    a JSON round trip (decisions are stored and replayed)."""
    number = make_number(**case.number)
    fake = FakeAssistantRequest(case.result)
    decision = await decide(
        number,
        make_call(**case.call),
        org_server=case.org_server,
        assistant_request=fake,
        apology=APOLOGY,
    )

    assert decision.outcome == case.outcome
    assert decision.route == case.route
    assert decision.ended_reason == case.ended
    assert list(decision.trace) == case.trace
    assert decision.failure_reason == case.failure
    assert len(fake.asked) == (0 if case.result is None else 1)
    if case.result is None:
        assert decision.assistant_request is None
    else:
        assert decision.assistant_request == case.result.facts()
        expected = number.server if "server:number" in case.trace else case.org_server
        assert fake.asked == [expected]

    stored = json.loads(json.dumps(decision.to_dict()))
    assert Decision.from_dict(stored) == decision


def test_decision_target_names_where_the_call_went() -> None:
    """`target` is the connect id, the transfer's number or SIP URI, else None."""
    assert Decision(Connect("squad", "s1"), "squad", None, ()).target == "s1"
    assert Decision(to(NUM), "fallback", d.FAILED, ()).target == NUM["number"]
    assert Decision(to(SIP), "hook", d.RINGING_TRANSFER, ()).target == SIP["sipUri"]
    assert Decision(Reject(), "reject", d.BLOCKED, ()).target is None


@pytest.mark.parametrize(
    "document",
    [
        {"outcome": {"kind": "reject"}, "route": "nowhere", "trace": []},
        {"outcome": {"kind": "teleport"}, "route": "say", "trace": []},
        {"outcome": {"kind": "reject"}, "route": "reject", "endedReason": "bored", "trace": []},
        {
            "outcome": {"kind": "connect", "target": "robot", "config": {}},
            "route": "assistant",
            "trace": [],
        },
    ],
)
def test_from_dict_refuses_documents_it_did_not_write(document: dict[str, Any]) -> None:
    """A stored decision with unknown values is an error, not a silently wrong replay."""
    with pytest.raises(ValueError, match="unknown"):
        Decision.from_dict(document)
