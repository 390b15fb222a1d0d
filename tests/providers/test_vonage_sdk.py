"""Every NCCO router renders is what Vonage's own SDK (vonage-voice's NCCO models) reads and
writes back unchanged: each action validated by the SDK's model and serialised as the SDK
serialises it (`by_alias`, without nulls) equals router's."""

from __future__ import annotations

from typing import Any

import pytest

from router.pipeline.decision import Connect, Decision, Outcome, Reject, Say, Transfer
from router.pipeline.decision import parse_destination as destination
from router.providers.plugin import RenderContext
from router.providers.vonage import VonageProvider
from router.runtimes.config import Runtime

from .vonage_support import CALL_UUID, RUNTIME_URL, make_call, make_number, ncco

vonage_ncco = pytest.importorskip("vonage_voice.models.ncco", reason="vonage-voice not installed")

BASE = "https://router.example.com"
SIP_RUNTIME = Runtime(name="oai", kind="sip", uri="sip:proj_x@sip.api.openai.com;transport=tls")

OUTCOMES: dict[str, Outcome] = {
    "connect, assistant": Connect("assistant", "asst-1"),
    "connect, transient squad": Connect("squad", None, {"squad": {"members": []}}),
    "say": Say("We are closed. Please call back tomorrow."),
    "say nothing": Say(""),
    "reject": Reject(),
    "transfer to a number with an extension": Transfer.to(
        destination(
            {
                "type": "number",
                "number": "+14155550142",
                "extension": "12w3",
                "message": "Connecting you now",
                "callerId": "{{customer.number}}",
            }
        )
    ),
    "transfer to SIP with headers": Transfer.to(
        destination(
            {
                "type": "sip",
                "sipUri": "sip:desk@pbx.example.com",
                "sipHeaders": {"Queue": "night", "User-to-User": "56a390f3;encoding=hex"},
                "transferPlan": {"mode": "blind-transfer", "dialTimeout": 25},
            }
        )
    ),
}

CONTEXTS: dict[str, RenderContext] = {
    "default runtime, no callbacks": RenderContext(RUNTIME_URL, CALL_UUID, BASE),
    "default runtime, callbacks": RenderContext(
        RUNTIME_URL,
        CALL_UUID,
        BASE,
        callbacks=f"runtime=default&to=%2B14155550100&call={CALL_UUID}",
    ),
    "SIP runtime, callbacks": RenderContext(
        RUNTIME_URL,
        CALL_UUID,
        BASE,
        runtime=SIP_RUNTIME,
        callbacks=f"runtime=oai&kind=sip&to=%2B14155550100&call={CALL_UUID}",
    ),
}


def sdk_input(action: dict[str, Any]) -> dict[str, Any]:
    """An action as the SDK's models take it in: by field name where it serialises by alias
    (`from_` for `from`, `contentType` for `content-type`)."""
    given = dict(action)
    if "from" in given:
        given["from_"] = given.pop("from")
    if "endpoint" in given:
        endpoints = []
        for endpoint in given["endpoint"]:
            endpoint = dict(endpoint)
            if "content-type" in endpoint:
                endpoint["contentType"] = endpoint.pop("content-type")
            endpoints.append(endpoint)
        given["endpoint"] = endpoints
    return given


MODELS = {"connect": "Connect", "talk": "Talk"}


@pytest.mark.parametrize("context", list(CONTEXTS))
@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_every_ncco_router_renders_is_the_sdks(outcome: str, context: str) -> None:
    decision = Decision(OUTCOMES[outcome], "assistant", None, ())
    rendered = VonageProvider().render(decision, make_call(), make_number(), CONTEXTS[context])
    actions = ncco(rendered.body)
    if outcome == "reject" or outcome == "say nothing":
        assert actions == []  # the empty NCCO: Vonage ends the call
        return
    assert actions
    for action in actions:
        model = getattr(vonage_ncco, MODELS[action["action"]])
        parsed = model.model_validate(sdk_input(action))
        assert parsed.model_dump(by_alias=True, exclude_none=True) == action, action
