"""The runtimes file: what it accepts, what it refuses (with a message that says where and
why), and how `router check-config` and `router serve` treat it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from router.commands.cli import main
from router.runtimes.config import DEFAULT_RUNTIME, Runtimes, RuntimesFileError

RUNTIME_URL = "wss://default.example.com/stream"


def load(data: Any) -> Runtimes:
    return Runtimes.from_data(data, RUNTIME_URL)


def refused(data: Any) -> str:
    with pytest.raises(RuntimesFileError) as caught:
        load(data)
    return str(caught.value)


STREAM = {"name": "a", "kind": "stream", "url": "wss://a.example.com/stream"}
SIP = {"name": "oai", "kind": "sip", "uri": "sip:proj_x@sip.api.openai.com;transport=tls"}
RELAY = {"name": "relay", "kind": "conversation-relay", "url": "wss://relay.example.com/ws"}


def test_the_specs_example_loads() -> None:
    runtimes = load(
        {
            "runtimes": [
                STREAM,
                {"name": "b", "kind": "stream", "url": "wss://b.example/stream"},
                SIP,
                RELAY,
            ],
            "routes": [
                {
                    "match": {"assistantId": "asst-ab*"},
                    "runtimes": [{"name": "a", "weight": 50}, {"name": "b", "weight": 50}],
                    "sticky": "caller",
                },
                {
                    "match": {"assistantId": "asst-oai", "provider": "twilio"},
                    "runtimes": [{"name": "oai"}],
                },
                {
                    "match": {"assistantId": "asst-relay", "provider": "twilio"},
                    "runtimes": [{"name": "relay"}],
                },
            ],
        }
    )
    assert list(runtimes.by_name) == [DEFAULT_RUNTIME, "a", "b", "oai", "relay"]
    assert runtimes.default.address == RUNTIME_URL
    route = runtimes.route_for({"assistantId": "asst-abc", "orgId": "o", "provider": "vonage"})
    assert route is not None and [r.name for r in route.runtimes] == ["a", "b"]
    assert runtimes.route_for({"assistantId": "asst-zzz"}) is None
    relay = runtimes.route_for({"assistantId": "asst-relay", "provider": "twilio"})
    assert relay is not None
    assert runtimes.route_for({"assistantId": "asst-relay", "provider": "telnyx"}) is None


def test_an_empty_file_is_the_default_alone() -> None:
    runtimes = load(None)
    assert list(runtimes.by_name) == [DEFAULT_RUNTIME] and runtimes.routes == ()


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ([], "expected a mapping"),
        ({"runtimes": [STREAM, STREAM]}, "runtime a is defined twice"),
        ({"runtimes": [{**STREAM, "name": "default"}]}, "taken by ROUTER_RUNTIME_URL"),
        ({"runtimes": [{**STREAM, "name": "no spaces"}]}, "a runtime name is"),
        ({"runtimes": [{**STREAM, "kind": "websocket"}]}, "runtimes.0.kind"),
        ({"runtimes": [{**STREAM, "url": "https://a.example"}]}, "wss:// URL"),
        ({"runtimes": [{**STREAM, "url": "wss://a.example/?t=1"}]}, "without a query string"),
        ({"runtimes": [{"name": "s", "kind": "sip", "url": "wss://x"}]}, "has a `uri`"),
        ({"runtimes": [{**SIP, "uri": "sip:a@b?x-h=1"}]}, "uri must be a SIP URI"),
        ({"runtimes": [{**SIP, "uri": "tel:+1415"}]}, "uri must be a SIP URI"),
        ({"runtimes": [{**STREAM, "healthUrl": "ftp://x"}]}, "healthUrl"),
        ({"runtimes": [{**STREAM, "extra": 1}]}, "extra"),
        (
            {"routes": [{"match": {"assistantId": "x"}, "runtimes": [{"name": "nope"}]}]},
            "not defined",
        ),
        (
            {"runtimes": [STREAM], "routes": [{"match": {}, "runtimes": [{"name": "a"}]}]},
            "at least one",
        ),
        (
            {
                "runtimes": [STREAM],
                "routes": [{"match": {"phone": "x"}, "runtimes": [{"name": "a"}]}],
            },
            "not phone",
        ),
        (
            {
                "runtimes": [STREAM],
                "routes": [{"match": {"provider": "skype"}, "runtimes": [{"name": "a"}]}],
            },
            "names none of",
        ),
        (
            {
                "runtimes": [STREAM],
                "routes": [{"match": {"orgId": "o"}, "runtimes": [{"name": "a", "weight": 0}]}],
            },
            "weight above 0",
        ),
        (
            {
                "runtimes": [STREAM],
                "routes": [{"match": {"orgId": "o"}, "runtimes": [{"name": "a", "weight": -1}]}],
            },
            "weight",
        ),
        (
            {
                "runtimes": [STREAM],
                "routes": [{"match": {"orgId": "o"}, "runtimes": [{"name": "a"}, {"name": "a"}]}],
            },
            "each runtime once",
        ),
        (
            {
                "runtimes": [STREAM],
                "routes": [
                    {"match": {"orgId": "o"}, "runtimes": [{"name": "a"}], "sticky": "number"}
                ],
            },
            "sticky",
        ),
    ],
)
def test_a_bad_file_is_refused_with_a_message(data: Any, says: str) -> None:
    assert says in refused(data)


@pytest.mark.parametrize("provider", ["vonage", "sip", "*"])
def test_a_kind_a_provider_cannot_carry_is_refused(provider: str) -> None:
    """ConversationRelay is Twilio's (and Telnyx TeXML's): a route that may serve Vonage or
    the SIP edge cannot list it."""
    message = refused(
        {
            "runtimes": [RELAY],
            "routes": [
                {"match": {"orgId": "o", "provider": provider}, "runtimes": [{"name": "relay"}]}
            ],
        }
    )
    assert "conversation-relay runtime" in message and "match.provider" in message


def test_a_relay_route_restricted_to_twilio_or_telnyx_is_accepted() -> None:
    for provider in ("twilio", "telnyx", "t*"):
        load(
            {
                "runtimes": [RELAY],
                "routes": [{"match": {"provider": provider}, "runtimes": [{"name": "relay"}]}],
            }
        )


@pytest.mark.parametrize("provider", [None, "telnyx", "t*"])
@pytest.mark.parametrize("weight", [1, 0])
def test_a_sip_runtime_telnyx_calls_may_reach_is_refused_saying_why(
    provider: str | None, weight: int
) -> None:
    """TeXML documents no SIP headers on `<Dial><Sip>`, and a sip runtime reads the call's
    ids from its `x-router-*` headers: a route that may send a Telnyx call to one, as a
    standby too, is refused with the reason."""
    match = {"assistantId": "asst-oai"} | ({"provider": provider} if provider else {})
    message = refused(
        {
            "runtimes": [STREAM, SIP],
            "routes": [
                {"match": match, "runtimes": [{"name": "a"}, {"name": "oai", "weight": weight}]}
            ],
        }
    )
    assert "runtime oai is a sip runtime, which telnyx calls cannot reach" in message
    assert "TeXML documents no SIP headers" in message and "match.provider" in message


@pytest.mark.parametrize("provider", ["twilio", "vonage", "sip", "[!t]*"])
def test_a_sip_runtime_on_a_route_telnyx_calls_cannot_reach_is_accepted(provider: str) -> None:
    load(
        {
            "runtimes": [SIP],
            "routes": [
                {"match": {"orgId": "o", "provider": provider}, "runtimes": [{"name": "oai"}]}
            ],
        }
    )


def test_a_route_whose_telnyx_calls_an_earlier_route_takes_may_list_a_sip_runtime() -> None:
    """First match wins: after a route with the same fields for `provider: telnyx`, no Telnyx
    call reaches the next one. An earlier route with other fields takes only some of them."""
    telnyx_first: dict[str, Any] = {
        "match": {"assistantId": "asst-ab*", "provider": "telnyx"},
        "runtimes": [{"name": "a"}],
    }
    everyone = {"match": {"assistantId": "asst-ab*"}, "runtimes": [{"name": "oai"}]}
    runtimes = load({"runtimes": [STREAM, SIP], "routes": [telnyx_first, everyone]})
    telnyx = runtimes.route_for({"assistantId": "asst-ab1", "provider": "telnyx"})
    assert telnyx is not None and [r.name for r in telnyx.runtimes] == ["a"]
    narrower = {**telnyx_first, "match": {**telnyx_first["match"], "orgId": "acme"}}
    assert "telnyx calls cannot reach" in refused(
        {"runtimes": [STREAM, SIP], "routes": [narrower, everyone]}
    )


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "runtimes.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_check_config_prints_the_runtimes_and_routes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        {
            "runtimes": [STREAM, SIP],
            "routes": [
                {
                    "match": {"assistantId": "asst-*", "provider": "twilio"},
                    "runtimes": [{"name": "oai"}, {"name": "a", "weight": 0}],
                }
            ],
        },
    )
    monkeypatch.setenv("ROUTER_RUNTIMES_FILE", str(path))
    monkeypatch.setenv("ROUTER_DATA_DIR", str(tmp_path / "data"))
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "runtime oai: sip sip:proj_x@sip.api.openai.com;transport=tls" in out
    assert "route 0: assistantId=asst-*, provider=twilio -> oai (1), a (0)" in out


@pytest.mark.parametrize("command", [["check-config"], ["serve", "--port", "1"]])
def test_a_bad_file_stops_check_config_and_serve(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    path = tmp_path / "runtimes.yaml"
    path.write_text("runtimes: [{name: a, kind: stream, url: 'http://x'}]\n")
    monkeypatch.setenv("ROUTER_RUNTIMES_FILE", str(path))
    monkeypatch.setenv("ROUTER_DATA_DIR", str(tmp_path / "data"))
    assert main(command) == 2
    captured = capsys.readouterr()
    assert f"router: {path}: runtimes.0: Value error" not in captured.err
    assert str(path) in captured.err and "wss:// URL" in captured.err
    assert "router.listening" not in captured.out


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RuntimesFileError, match="No such file"):
        Runtimes.from_file(tmp_path / "nope.yaml", RUNTIME_URL)
    bad = tmp_path / "bad.yaml"
    bad.write_text("runtimes: [\n")
    with pytest.raises(RuntimesFileError, match="not YAML"):
        Runtimes.from_file(bad, RUNTIME_URL)
