"""`/metrics`: what ops dashboards read, after real calls through the real app."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from router.app import create_app
from router.settings import Settings

from . import API_KEY, RUNTIME_URL, signed, stream_parameters, twilio_number, voice_form

PUBLIC_URL = "https://router.example.com"
Client = TestClient[web.Request, web.Application]


class Scrape:
    """One `/metrics` exposition, parsed by prometheus-client's own parser."""

    def __init__(self, text: str) -> None:
        self.samples = [
            sample for family in text_string_to_metric_families(text) for sample in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples called `name` whose labels include `labels` (0 if none)."""
        return sum(
            s.value for s in self.samples if s.name == name and labels.items() <= s.labels.items()
        )


async def scrape(client: Client) -> Scrape:
    async with client.get("/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        return Scrape(await response.text())


async def voice(
    client: Client, fields: dict[str, str], signature_ok: bool = True, unsigned: bool = False
) -> tuple[int, bytes]:
    headers = signed(f"{PUBLIC_URL}/twilio/voice", fields)
    if not signature_ok:
        headers["X-Twilio-Signature"] = "bm90IGEgc2lnbmF0dXJl"
    if unsigned:
        del headers["X-Twilio-Signature"]
    async with client.post("/twilio/voice", data=urlencode(fields), headers=headers) as response:
        return response.status, await response.read()


async def test_metrics_count_calls_latency_cache_rejections_and_api_requests(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    """Three routed calls, one forged signature, one unsigned request, one unknown number,
    one API create: each shows in its metric with the labels dashboards filter on."""
    settings = Settings(
        api_key=API_KEY,
        data_dir=tmp_path / "data",
        redis_url=None,
        public_url=PUBLIC_URL,
        runtime_url=RUNTIME_URL,
    )
    client = await aiohttp_client(create_app(settings))
    async with client.post(
        "/phone-number",
        json=twilio_number(assistantId="asst-1"),
        headers={"Authorization": f"Bearer {API_KEY}"},
    ) as response:
        assert response.status == 201
    before = await scrape(client)
    assert before.value("router_calls_total") == 0

    for _ in range(3):
        status, body = await voice(client, voice_form())
        assert status == 200 and stream_parameters(body)["targetId"] == "asst-1"
    status, body = await voice(client, voice_form(), signature_ok=False)
    assert status == 200 and b"<Reject/>" in body  # as an unknown number is
    status, _ = await voice(client, voice_form(), unsigned=True)
    assert status == 403  # before any lookup
    status, body = await voice(client, voice_form(to="+14155550999"))
    assert status == 200 and b"<Reject/>" in body  # rejected unanswered

    after = await scrape(client)
    routed = {"provider": "twilio", "route": "assistant", "ended_reason": ""}
    assert after.value("router_calls_total", **routed) == 3
    assert after.value("router_calls_total") == 3
    timing = {"provider": "twilio", "route": "assistant"}
    assert after.value("router_decision_seconds_count", **timing) == 3
    assert after.value("router_decision_seconds_bucket", le="+Inf", **timing) == 3
    assert after.value("router_decision_seconds_bucket", le="5.0", **timing) == 3
    # Misses: the first call (the create dropped the number from this worker's cache) and
    # the unknown number (one lookup: its account's key, then the number-only key numbers
    # stored by older versions claim). Hits: the next two calls and the forged one (its
    # number's token is what the signature is checked with).
    assert after.value("router_cache_lookups_total", result="miss") == 2
    assert after.value("router_cache_lookups_total", result="hit") == 3
    rejected = {"provider": "twilio", "reason": "bad-signature"}
    assert after.value("router_webhook_rejections_total", **rejected) == 1
    unsigned = {"provider": "twilio", "reason": "missing-signature"}
    assert after.value("router_webhook_rejections_total", **unsigned) == 1
    assert after.value("router_unknown_numbers_total", provider="twilio") == 1
    created = {"method": "POST", "route": "/phone-number", "status": "201"}
    assert after.value("router_api_requests_total", **created) == 1
    timed = {"method": "POST", "route": "/phone-number"}
    assert after.value("router_api_request_seconds_count", **timed) == 1
    # Webhooks count by their route too, whatever they answered.
    webhook = {"method": "POST", "route": "/twilio/voice"}
    assert after.value("router_api_requests_total", status="200", **webhook) == 5
    assert after.value("router_api_requests_total", status="403", **webhook) == 1
    # Call webhooks are timed once, by `router_decision_seconds`, not twice.
    assert after.value("router_api_request_seconds_count", **webhook) == 0
    assert after.value("router_inflight_webhooks") == 0

    # A path no route has, and a route's path with another method.
    async with client.get("/no-such-path") as response:
        assert response.status == 404
    async with client.delete("/twilio/voice") as response:
        assert response.status == 405
    last = await scrape(client)
    unmatched = {"route": "unmatched"}
    assert last.value("router_api_requests_total", method="GET", status="404", **unmatched) == 1
    assert last.value("router_api_requests_total", method="DELETE", status="405", **unmatched) == 1
