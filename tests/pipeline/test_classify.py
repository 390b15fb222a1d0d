"""Properties of the response classifier over arbitrary JSON (hypothesis)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from router.pipeline.decide import Accepted, AssistantRequestResult, classify
from router.pipeline.decision import Decision, FailureReason, Outcome, Route, Say

KEYS = [
    "error",
    "destination",
    "assistantId",
    "assistant",
    "squadId",
    "squad",
    "workflowId",
    "workflow",
    "assistantOverrides",
    "squadOverrides",
    "workflowOverrides",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["type", "number", "sipUri", "message"]) | st.text(max_size=5),
            inner,
            max_size=3,
        )
    ),
    max_leaves=10,
)
bodies = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), json_values, max_size=6)


# No example database: the run must not leave files in the working tree.
@settings(database=None)
@given(bodies)
def test_any_json_object_gets_a_verdict_that_can_be_stored(body: dict[str, Any]) -> None:
    """Whatever object a server returns, classification does not raise, connects only
    to a routing field the body holds, and the decision survives a JSON round trip."""
    verdict = classify(AssistantRequestResult("ok", None, body, 1, 1.0, 200))
    outcome: Outcome
    route: Route
    reason: FailureReason | None
    if isinstance(verdict, Accepted):
        assert body.get("error") is None
        assert body.get("destination") is None
        connect = verdict.connect
        assert connect.target_id == body.get(f"{connect.target}Id")
        outcome, route, reason = connect, "assistant-request", None
    else:
        outcome, route, reason = verdict.outcome or Say(""), "say", verdict.reason
    decision = Decision(outcome, route, reason, (), reason)
    stored = json.loads(json.dumps(decision.to_dict()))
    assert Decision.from_dict(stored) == decision
