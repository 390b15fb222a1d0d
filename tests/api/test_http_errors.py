"""HTTP-level errors: all JSON in the NestJS shape (checked by `Api` on every reply)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from router.api.edge import edge
from router.app import create_app
from router.settings import Settings

from .conftest import (
    API_KEY,
    OTHER_KEY,
    Api,
    MakeSettings,
    StartApi,
    expect,
    messages,
    rejected,
    twilio_body,
)

OPERATIONS = [
    ("POST", "/phone-number"),
    ("GET", "/phone-number"),
    ("GET", "/v2/phone-number"),
    ("POST", "/phone-number/import/twilio"),
    ("GET", "/phone-number/{id}"),
    ("PATCH", "/phone-number/{id}"),
    ("DELETE", "/phone-number/{id}"),
    ("POST", "/credential"),
    ("GET", "/credential"),
    ("GET", "/credential/{id}"),
    ("PATCH", "/credential/{id}"),
    ("DELETE", "/credential/{id}"),
]


@pytest.mark.parametrize(("method", "template"), OPERATIONS)
async def test_every_operation_needs_a_valid_bearer_key(
    api: Api, method: str, template: str
) -> None:
    """No key, a wrong key or another scheme: 401 with `WWW-Authenticate: Bearer`."""
    path = template.format(id=uuid.uuid4())
    for key, header in (
        (None, {}),
        ("not-a-key", {}),
        (None, {"Authorization": f"Basic {API_KEY}"}),
        (None, {"Authorization": "Bearer "}),
        (None, {"Authorization": API_KEY}),
    ):
        reply = await api.with_key(key).call(method, path, {}, headers=header)
        assert reply.status == 401, (key, header)
        assert reply.headers["WWW-Authenticate"] == "Bearer"
        assert "Unauthorized" in messages(reply)
        assert API_KEY not in reply.text


async def test_an_api_key_is_read_case_insensitively_as_bearer(api: Api) -> None:
    """The scheme is case-insensitive (`bearer`), as HTTP says."""
    reply = await api.with_key(None).call(
        "GET", "/phone-number", headers={"Authorization": f"bearer {API_KEY}"}
    )
    assert reply.status == 200


@pytest.mark.parametrize("kind", ["phone-number", "credential"])
async def test_unknown_ids_are_404_and_non_uuids_400(api: Api, kind: str) -> None:
    """GET/PATCH/DELETE of an unknown id: 404; of a non-UUID: 400 saying so."""
    unknown = f"/{kind}/{uuid.uuid4()}"
    assert rejected(await api.get(unknown), 404).endswith("not found")
    assert rejected(await api.patch(unknown, {"name": "x"}), 404).endswith("not found")
    assert rejected(await api.delete(unknown), 404).endswith("not found")
    for bad in ("123", "not-a-uuid", "%20", "..%2F..%2Fetc"):
        path = f"/{kind}/{bad}"
        assert "must be a UUID" in rejected(await api.get(path))
        assert "must be a UUID" in rejected(await api.patch(path, {"name": "x"}))
        assert "must be a UUID" in rejected(await api.delete(path))


async def test_duplicate_names_its_owner_only_within_the_org(api: Api, other: Api) -> None:
    """409 names the owning number's id in the same org, and not across orgs."""
    owner = await api.create_number(twilio_body("+14155550160"))
    same_org = rejected(await api.post("/phone-number", twilio_body("+14155550160")), 409)
    assert owner["id"] in same_org
    assert "twilio number +14155550160" in same_org

    other_org = rejected(await other.post("/phone-number", twilio_body("+14155550160")), 409)
    assert owner["id"] not in other_org
    assert "another organization" in other_org

    imported = await other.post(
        "/phone-number/import/twilio",
        {"twilioPhoneNumber": "+14155550160", "twilioAccountSid": owner["twilioAccountSid"]},
    )
    assert owner["id"] not in rejected(imported, 409)


async def test_oversized_body_is_413(start_api: StartApi, make_settings: MakeSettings) -> None:
    """A body over `max_body_bytes` is a 413; one under it is read."""
    api = await start_api(make_settings(max_body_bytes=2048))
    big = twilio_body(name="x", assistantId="a" * 4096)
    assert rejected(await api.post("/phone-number", big), 413) == "Request body is too large"
    created = await api.create_number(twilio_body())
    path = f"/phone-number/{created['id']}"
    assert rejected(await api.patch(path, big), 413) == "Request body is too large"
    assert (await api.post("/credential", big)).status == 413
    expect(await api.post("/phone-number", twilio_body("+14155550161", name="small")), 201)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_non_json_content_type_is_415(api: Api, content_type: str) -> None:
    """A body that is not declared JSON is a 415 naming the expected type."""
    headers = {"Content-Type": content_type} if content_type else {}
    for path in ("/phone-number", "/phone-number/import/twilio", "/credential"):
        reply = await api.post(path, data=b'{"provider": "twilio"}', headers=headers)
        assert "Content-Type must be application/json" in rejected(reply, 415)


async def test_json_with_a_charset_or_a_json_suffix_is_accepted(api: Api) -> None:
    """`application/json; charset=utf-8` and `application/vnd.api+json` are JSON."""
    for number, content_type in (
        ("+14155550162", "application/json; charset=utf-8"),
        ("+14155550163", "application/vnd.api+json"),
    ):
        body = twilio_body(number)
        raw = ("{" + ",".join(f'"{k}":"{v}"' for k, v in body.items()) + "}").encode()
        reply = await api.post("/phone-number", data=raw, headers={"Content-Type": content_type})
        assert reply.status == 201, reply.text


@pytest.mark.parametrize(
    "raw", [b"{", b'{"provider": "twilio",}', b"nope", b"{'a': 1}", b'{"a": NaN}', b"\xff\xfe"]
)
async def test_malformed_json_is_400(api: Api, raw: bytes) -> None:
    """Malformed JSON is a 400 saying the body is not valid JSON."""
    headers = {"Content-Type": "application/json"}
    for path in ("/phone-number", "/phone-number/import/twilio", "/credential"):
        reply = await api.post(path, data=raw, headers=headers)
        assert "body is not valid JSON" in rejected(reply)


@pytest.mark.parametrize("raw", [b"[]", b'"twilio"', b"42", b"null", b"true", b"", b"  "])
async def test_a_body_that_is_not_an_object_is_400(api: Api, raw: bytes) -> None:
    """Arrays, strings, numbers, null and empty bodies are a 400, also on PATCH."""
    created = await api.create_number(twilio_body())
    headers = {"Content-Type": "application/json"}
    for method, path in (
        ("POST", "/phone-number"),
        ("POST", "/phone-number/import/twilio"),
        ("POST", "/credential"),
        ("PATCH", f"/phone-number/{created['id']}"),
    ):
        reply = await api.call(method, path, data=raw, headers=headers)
        assert rejected(reply) == "body must be a JSON object"


async def test_unknown_routes_and_methods_are_json_errors(api: Api) -> None:
    """404 for an unknown path, 405 (with Allow) for an unknown method."""
    assert (await api.get("/phone-numbers")).status == 404
    for path in ("/phone-number%0A", "/%0A/x", "/a%00b"):  # decoded into the path as they are
        assert rejected(await api.get(path), 404) == "Not Found"
    reply = await api.call("PUT", "/phone-number", {})
    assert rejected(reply, 405) == "Method Not Allowed"
    assert "POST" in reply.headers["Allow"]


async def test_the_other_orgs_key_works_too(api: Api) -> None:
    """Each configured key authenticates as its org (a sanity check of the two-org setup)."""
    assert (await api.with_key(OTHER_KEY).get("/phone-number")).status == 200


def test_every_route_is_behind_the_edge(tmp_path: Path) -> None:
    """No route of the app answers outside `edge` (JSON errors, metrics): a route added
    with aiohttp's own `add_routes` or `add_get` would."""
    app = create_app(Settings(data_dir=tmp_path / "data"))
    routes = list(app.router.routes())
    assert len(routes) > 20
    for route in routes:
        assert route.handler.__qualname__ == edge.__qualname__ + ".<locals>.at_the_edge", route
