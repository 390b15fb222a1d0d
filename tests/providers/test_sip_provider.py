"""The SIP edge provider's request side: which number a request names, router's call id,
the edge's bearer secret, the parsed call, the digest gate and status events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from router.models.phone_numbers import RECORD_MODELS, AnyPhoneNumber, VapiPhoneNumber, lookup_key
from router.pipeline.decision import Connect, Decision
from router.pipeline.inbound_call import InboundCall
from router.providers import PROVIDERS, sip_digest
from router.providers.plugin import (
    Challenge,
    MalformedWebhook,
    RenderContext,
    VerificationFailed,
    WebhookRequest,
)
from router.providers.sip import SipProvider, realm_of, scoped_call_id
from router.settings import Settings

from .test_sip_digest import sip_authorization

EDGE_SECRET = "edge-secret-SECRET-sip-01"
USERNAME = "sip-user-000000000001"
PASSWORD = "sip-password-000000000001"
SIP_URI = "sip:support@sip.example.com"
WALL_TIME = 1_700_000_000.0
RUNTIME_URL = "wss://runtime.example.com/stream"
SETTINGS = Settings(sip_edge_secret=SecretStr(EDGE_SECRET), runtime_url=RUNTIME_URL)
CONNECT = Decision(Connect("assistant", "asst-1"), "assistant", None, ("assistantId",))


def make_number(**wire: Any) -> AnyPhoneNumber:
    """A stored `vapi` number with digest authentication unless `wire` says otherwise."""
    base: dict[str, Any] = {
        "id": "pn-sip",
        "orgId": "org-1",
        "createdAt": "2024-01-01T00:00:00Z",
        "updatedAt": "2024-01-01T00:00:00Z",
        "provider": "vapi",
        "sipUri": SIP_URI,
        "authentication": {"username": USERNAME, "password": PASSWORD},
        "assistantId": "asst-1",
    }
    data = {k: v for k, v in (base | wire).items() if v is not None}
    return RECORD_MODELS[data["provider"]].model_validate(data)


def byo_number(**wire: Any) -> AnyPhoneNumber:
    return make_number(
        provider="byo-phone-number",
        sipUri=None,
        authentication=None,
        credentialId="cred-trunk",
        number="+14155550100",
        **wire,
    )


def route_request(
    body: dict[str, Any] | None = None,
    *,
    secret: str | None = EDGE_SECRET,
    raw: bytes | None = None,
    method: str = "POST",
    wall_time: float = WALL_TIME,
    **fields: Any,
) -> Any:
    from router.providers.plugin import WebhookRequest

    data = {"callId": "a84b4c76e66710@pc33.example.com", "from": "+14155550123", "toUri": SIP_URI}
    data |= body or {}
    data |= fields
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    return WebhookRequest.create(
        method=method,
        url="https://router.example.com/sip/route",
        headers=headers,
        body=raw if raw is not None else json.dumps(data).encode(),
        received_at=100.0,
        wall_time=wall_time,
    )


@pytest.fixture
def sip() -> SipProvider:
    provider = PROVIDERS["sip"]
    assert isinstance(provider, SipProvider)
    return provider


def test_sip_serves_route_and_status_with_its_own_budget(sip: SipProvider) -> None:
    """`POST /sip/route`, `/sip/status` and `/sip/connect` (the runtime's outcome) only; the
    budget is `sip_budget_seconds`."""
    assert dict(sip.endpoints) == {"voice": "route", "status": "status", "connect": "connect"}
    assert sip.budget_seconds(Settings(sip_budget_seconds=3.5)) == 3.5


# --- which number -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "to_uri",
    [
        "sip:Support@SIP.Example.com",
        "sips:support@sip.example.com;transport=tls",
        "<sip:support@sip.example.com?X-Foo=1>",
    ],
)
def test_request_uri_finds_the_vapi_number_case_insensitively(
    sip: SipProvider, to_uri: str
) -> None:
    assert sip.lookup_key(route_request(toUri=to_uri)) == lookup_key(make_number())


def test_a_sip_to_stands_in_for_a_missing_to_uri(sip: SipProvider) -> None:
    req = route_request({"toUri": None, "to": "sip:SUPPORT@sip.example.com"})
    assert sip.lookup_key(req) == "sip:support@sip.example.com"


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"to": "+14155550100"}, "byo:cred-trunk:+14155550100"),
        ({"to": "sip:+14155550100@trunk.example.com;user=phone"}, "byo:cred-trunk:+14155550100"),
        ({"to": "tel:+14155550100;phone-context=x"}, "byo:cred-trunk:+14155550100"),
        ({"to": None, "toUri": "sip:+14155550100@10.0.0.1:5060"}, "byo:cred-trunk:+14155550100"),
        # Not E.164 with a `+`: matched exactly as sent (numberE164CheckEnabled=false records).
        ({"to": "14155550100"}, "byo:cred-trunk:14155550100"),
        ({"to": "ext1001"}, "byo:cred-trunk:ext1001"),
        ({"to": "+0123"}, "byo:cred-trunk:+0123"),
    ],
)
def test_credential_id_and_called_number_find_the_byo_number(
    sip: SipProvider, fields: dict[str, Any], key: str
) -> None:
    """With credentialId, the number (not the URI) decides: E.164 when it is one with +."""
    req = route_request({"credentialId": "cred-trunk", "toUri": "sip:x@trunk.example.com"} | fields)
    assert sip.lookup_key(req) == key
    assert lookup_key(byo_number()) == "byo:cred-trunk:+14155550100"


@pytest.mark.parametrize(
    "req",
    [
        route_request(toUri=None),
        route_request(toUri="tel:+14155550100"),
        route_request(raw=b"not json"),
        route_request(raw=b"[1, 2]"),
        route_request(method="GET", raw=b""),
        route_request(credentialId="cred-trunk", toUri=None),
    ],
)
def test_requests_naming_no_number_have_no_lookup_key(sip: SipProvider, req: Any) -> None:
    """The pipeline then answers `reject()`: 404 for the caller."""
    assert sip.lookup_key(req) is None


def test_call_id_is_the_sip_call_id_scoped_to_the_called_number(sip: SipProvider) -> None:
    """One Call-ID sent to two numbers gets two router call ids: no shared decision."""
    one = sip.call_id(route_request())
    other = sip.call_id(route_request(toUri="sip:sales@sip.example.com"))
    assert one == scoped_call_id("a84b4c76e66710@pc33.example.com", "sip:support@sip.example.com")
    assert one is not None and one.startswith("a84b4c76e66710@pc33.example.com~")
    assert len(one.rsplit("~", 1)[1]) == 12
    assert other is not None and other != one
    assert sip.call_id(route_request(toUri="SIP:SUPPORT@sip.example.com")) == one


# --- the edge's secret --------------------------------------------------------------------


def test_the_edge_secret_admits_requests_before_any_lookup(sip: SipProvider) -> None:
    """The edge secret needs no number: it is checked before the lookup."""
    sip.preverify(route_request(), SETTINGS)


def test_a_byo_number_is_admitted_without_a_digest(sip: SipProvider) -> None:
    sip.verify(route_request(), byo_number(), (), SETTINGS)


@pytest.mark.parametrize(
    ("req", "settings", "reason"),
    [
        (route_request(), Settings(), "edge-secret-not-configured"),
        (route_request(secret=None), SETTINGS, "missing-edge-secret"),
        (route_request(secret=""), SETTINGS, "missing-edge-secret"),
        (route_request(secret="wrong-secret"), SETTINGS, "bad-edge-secret"),
        (route_request(secret=EDGE_SECRET + "x"), SETTINGS, "bad-edge-secret"),
    ],
)
def test_verification_fails_closed_without_the_edge_secret(
    sip: SipProvider, req: Any, settings: Settings, reason: str
) -> None:
    with pytest.raises(VerificationFailed) as info:
        sip.preverify(req, settings)
    assert info.value.reason == reason


def test_a_number_of_another_provider_is_refused(sip: SipProvider) -> None:
    twilio = make_number(
        provider="twilio",
        sipUri=None,
        authentication=None,
        number="+14155550100",
        twilioAccountSid="AC1",
        twilioAuthToken="tok",
    )
    with pytest.raises(VerificationFailed, match="provider-mismatch"):
        sip.verify(route_request(), twilio, (), SETTINGS)


def test_a_bearer_scheme_in_any_case_is_read(sip: SipProvider) -> None:
    req = route_request(secret=None)
    req = type(req).create(
        method="POST",
        url=req.url,
        headers={"authorization": f"bearer {EDGE_SECRET}"},
        body=req.body,
        received_at=1.0,
        wall_time=WALL_TIME,
    )
    sip.preverify(req, SETTINGS)


# --- the parsed call ----------------------------------------------------------------------


def test_parse_reads_the_route_request(sip: SipProvider) -> None:
    req = route_request(
        {
            "from": '"Alice" <sip:+14155550123@carrier.example.com;user=phone>;tag=9fxced76sl',
            "to": "+14155550100",
            "sourceIp": "203.0.113.7",
            "headers": {"X-Campaign": "spring", "X-Tags": ["a", "b"]},
            "method": "invite",
            "futureField": {"ignored": True},
        }
    )
    call = sip.parse(req)
    assert call.provider == "sip"
    assert call.transport == "sip"
    assert call.provider_call_id == sip.call_id(req)
    assert call.from_number == "+14155550123"
    assert call.to_number == "+14155550100"
    assert call.sip_uri == SIP_URI
    assert call.created_at == datetime.fromtimestamp(WALL_TIME, UTC)
    assert call.params["sipCallId"] == "a84b4c76e66710@pc33.example.com"
    assert call.params["sourceIp"] == "203.0.113.7"
    assert call.params["headers"] == {"X-Campaign": "spring", "X-Tags": ["a", "b"]}


@pytest.mark.parametrize(
    ("caller", "expected"),
    [
        ("", "anonymous"),
        ("anonymous", "anonymous"),
        ("sip:anonymous@anonymous.invalid", "anonymous"),
        ("<sip:alice@example.com>", "alice"),
        ("tel:+14155550123", "+14155550123"),
        ("14155550123", "14155550123"),
    ],
)
def test_parse_reads_the_caller_from_numbers_uris_and_name_addrs(
    sip: SipProvider, caller: str, expected: str
) -> None:
    assert sip.parse(route_request({"from": caller})).from_number == expected


@pytest.mark.parametrize(
    ("sent", "level"),
    [
        ("A", "A"),
        ("b", "B"),
        ("C", "C"),
        ("failed", "failed"),
        ("none", "none"),
        ("TN-Validation-Passed-B", "B"),  # a verstat as the edge found it
        ("TN-Validation-Passed", "A"),  # Telnyx's verstat for A
        ("TN-Validation-Failed", "failed"),
        ("No-TN-Validation", "none"),
        ("X", "none"),  # unknown: none
        (None, "none"),
    ],
)
def test_the_edges_attestation_field_is_the_calls_attestation(
    sip: SipProvider, sent: str | None, level: str
) -> None:
    """`attestation` in the body: router's level or a verstat value; absent or unknown: none."""
    body = {} if sent is None else {"attestation": sent}
    assert sip.parse(route_request(body)).attestation == level


def test_an_attestation_that_is_not_a_string_is_a_400(sip: SipProvider) -> None:
    """Like every field of the body: the wrong type is a malformed request."""
    with pytest.raises(MalformedWebhook) as info:
        sip.parse(route_request({"attestation": 3}))
    assert info.value.reason == "invalid-field:attestation"


@pytest.mark.parametrize(
    ("req", "reason"),
    [
        (route_request(raw=b"{"), "bad-json"),
        (route_request(callId=""), "invalid-field:callId"),
        (route_request(callId=7), "invalid-field:callId"),
        (route_request(callId="abc\r\nX-Evil: 1"), "invalid-field:callId"),
        (route_request(headers={"X-A": {"nested": 1}}), "invalid-field:headers.X-A.str"),
        (route_request({"method": "BYE"}), "unsupported-method"),
        (route_request(method="GET", raw=b""), "method-not-allowed"),
        (route_request(toUri=None), "missing-called-number"),
    ],
)
def test_malformed_route_requests_are_400s(sip: SipProvider, req: Any, reason: str) -> None:
    with pytest.raises(MalformedWebhook) as info:
        sip.parse(req)
    assert info.value.reason == reason


# --- the digest gate ----------------------------------------------------------------------

CTX = RenderContext(runtime_url=RUNTIME_URL, call_id="call-1~abc", public_base="")


def realm() -> str:
    number = make_number()
    assert isinstance(number, VapiPhoneNumber)
    return realm_of(number)


def nonce_key(number: AnyPhoneNumber | None = None) -> bytes:
    return sip_digest.nonce_key((number or make_number()).id, USERNAME, realm(), PASSWORD)


def rendered(sip: SipProvider, call: InboundCall, number: AnyPhoneNumber | None = None) -> Any:
    return json.loads(sip.render(CONNECT, call, number or make_number(), CTX).body)


def answered(sip: SipProvider, req: WebhookRequest, number: AnyPhoneNumber | None = None) -> Any:
    """What the edge gets: the challenge `verify` raises, else the rendered decision."""
    the_number = number or make_number()
    try:
        sip.verify(req, the_number, (), SETTINGS)
    except Challenge as challenge:
        return json.loads(challenge.rendered.body)
    return rendered(sip, sip.parse(req), the_number)


def test_the_realm_defaults_to_the_sip_uri_host(sip: SipProvider) -> None:
    assert realm() == "sip.example.com"
    custom = make_number(
        authentication={"realm": "pbx", "username": USERNAME, "password": PASSWORD}
    )
    assert isinstance(custom, VapiPhoneNumber)
    assert realm_of(custom) == "pbx"


def test_a_call_without_credentials_is_challenged_whatever_the_decision(
    sip: SipProvider,
) -> None:
    """A 401 for the caller: realm, a fresh nonce, and the header value to send as is."""
    with pytest.raises(Challenge) as challenged:
        sip.verify(route_request(), make_number(), (), SETTINGS)
    result = challenged.value.rendered
    assert challenged.value.reason == "digest-challenge:missing-authorization"
    assert result.status == 200
    assert result.content_type == "application/json"
    assert result.warnings == ("digest-challenge:missing-authorization",)
    body = json.loads(result.body)
    nonce = body["nonce"]
    assert body == {
        "action": "challenge",
        "callId": sip.call_id(route_request()),
        "sipCallId": "a84b4c76e66710@pc33.example.com",
        "status": 401,
        "header": "WWW-Authenticate",
        "value": (f'Digest realm="sip.example.com", nonce="{nonce}", algorithm=MD5, qop="auth"'),
        "realm": "sip.example.com",
        "nonce": nonce,
        "algorithm": "MD5",
        "qop": "auth",
        "stale": False,
        "reason": "missing-authorization",
        "route": None,
        "endedReason": None,
        "trace": ["digest-challenge:missing-authorization"],
    }
    assert sip_digest.nonce_age(nonce_key(), nonce, WALL_TIME) == 0


@pytest.mark.parametrize(
    ("algorithm", "qop"), [(None, "auth"), ("MD5", "auth"), ("MD5-sess", "auth"), (None, None)]
)
def test_a_correct_digest_gets_the_decision(
    sip: SipProvider, qop: str | None, algorithm: str | None
) -> None:
    nonce = sip_digest.make_nonce(nonce_key(), WALL_TIME - 10)
    header = sip_authorization(
        nonce=nonce,
        username=USERNAME,
        password=PASSWORD,
        realm="sip.example.com",
        uri="sip:support@sip.example.com;transport=udp",
        qop=qop,
        algorithm=algorithm,
    )
    assert answered(sip, route_request(authorization=header))["action"] == "connect"


def test_a_wrong_password_is_challenged_again_not_stale(sip: SipProvider) -> None:
    nonce = sip_digest.make_nonce(nonce_key(), WALL_TIME)
    header = sip_authorization(
        nonce=nonce, username=USERNAME, password="x" * 20, realm="sip.example.com", uri=SIP_URI
    )
    body = answered(sip, route_request(authorization=header))
    assert (body["action"], body["reason"], body["stale"]) == ("challenge", "bad-response", False)


def test_an_expired_nonce_with_the_right_password_is_challenged_as_stale(
    sip: SipProvider,
) -> None:
    nonce = sip_digest.make_nonce(nonce_key(), WALL_TIME - sip_digest.NONCE_TTL_SECONDS - 1)
    header = sip_authorization(
        nonce=nonce, username=USERNAME, password=PASSWORD, realm="sip.example.com", uri=SIP_URI
    )
    body = answered(sip, route_request(authorization=header))
    assert (body["action"], body["reason"], body["stale"]) == ("challenge", "stale-nonce", True)
    assert body["value"].endswith(", stale=true")
    assert body["nonce"] != nonce


def test_a_tampered_nonce_is_challenged(sip: SipProvider) -> None:
    nonce = sip_digest.make_nonce(nonce_key(), WALL_TIME)
    forged = f"{int(WALL_TIME) + 600:08x}{nonce[8:]}"
    header = sip_authorization(
        nonce=forged, username=USERNAME, password=PASSWORD, realm="sip.example.com", uri=SIP_URI
    )
    body = answered(sip, route_request(authorization=header))
    assert (body["action"], body["reason"], body["stale"]) == ("challenge", "bad-nonce", False)


def test_a_digest_for_another_request_uri_is_challenged(sip: SipProvider) -> None:
    nonce = sip_digest.make_nonce(nonce_key(), WALL_TIME)
    header = sip_authorization(
        nonce=nonce,
        username=USERNAME,
        password=PASSWORD,
        realm="sip.example.com",
        uri="sip:sales@sip.example.com",
    )
    assert answered(sip, route_request(authorization=header))["reason"] == "wrong-uri"


def test_numbers_without_authentication_and_byo_numbers_are_never_challenged(
    sip: SipProvider,
) -> None:
    open_number = make_number(authentication=None)
    assert rendered(sip, sip.parse(route_request()), open_number)["action"] == "connect"
    byo = sip.parse(route_request(credentialId="cred-trunk", to="+14155550100"))
    assert rendered(sip, byo, byo_number())["action"] == "connect"


# --- status events ------------------------------------------------------------------------


def test_status_events_are_normalised_under_the_routed_call_id(sip: SipProvider) -> None:
    req = route_request(status="ended", durationSeconds=42, sequence=3, timestamp=1.7e9)
    event = sip.parse_status(req)
    assert event.provider_call_id == sip.call_id(route_request())
    assert (event.status, event.is_final, event.duration_seconds, event.sequence) == (
        "completed",
        True,
        42,
        3,
    )
    assert event.timestamp == 1.7e9
    assert event.params["From"] == "+14155550123"
    assert json.loads(sip.ack_status().body) == {"ok": True}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"status": "exploded"}, "unknown-call-status"),
        ({}, "invalid-field:status"),
        ({"status": "ringing", "toUri": None}, "missing-called-number"),
    ],
)
def test_malformed_status_events_are_400s(
    sip: SipProvider, fields: dict[str, Any], reason: str
) -> None:
    with pytest.raises(MalformedWebhook) as info:
        sip.parse_status(route_request(fields))
    assert info.value.reason == reason
