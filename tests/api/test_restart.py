"""The embedded store across a restart: same data, same order, same uniqueness claims."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from router.app import create_app
from router.models.phone_numbers import AnyPhoneNumber
from router.state import NUMBER_CACHE
from router.store.interface import StoreUnavailable

from .conftest import (
    MakeSettings,
    StartApi,
    expect,
    messages,
    telnyx_body,
    telnyx_credential,
    twilio_body,
    vapi_body,
)

pytestmark = pytest.mark.parametrize("backend", ["embedded"])


async def test_a_restarted_worker_has_every_acknowledged_write(
    start_api: StartApi, make_settings: MakeSettings
) -> None:
    """Stop the app, start a new one on the same data_dir: same numbers in the same order,
    same credentials, claims still enforced, deleted numbers still gone and free."""
    settings = make_settings()
    api = await start_api(settings)
    credential = await api.create_credential(telnyx_credential())
    kept = await api.create_number(twilio_body("+14155550501", name="kept"))
    await api.create_number(telnyx_body(credential["id"], "+14155550502"))
    await api.create_number(vapi_body("sip:restart@sip.example.com"))
    gone = await api.create_number(twilio_body("+14155550503"))
    moved = await api.create_number(twilio_body("+14155550504"))
    expect(await api.delete(f"/phone-number/{gone['id']}"), 200)
    expect(await api.patch(f"/phone-number/{moved['id']}", {"number": "+14155550505"}), 200)
    expect(await api.patch(f"/phone-number/{kept['id']}", {"name": "renamed"}), 200)

    before = await api.list_numbers()
    before_page = await api.page(limit="2", page="2", sortOrder="ASC")
    before_credentials = expect(await api.get("/credential"), 200)
    await api.client.close()

    restarted = await start_api(settings)
    assert await restarted.list_numbers() == before
    assert await restarted.page(limit="2", page="2", sortOrder="ASC") == before_page
    assert expect(await restarted.get("/credential"), 200) == before_credentials
    assert (await restarted.get(f"/phone-number/{gone['id']}")).status == 404

    for body, owner in (
        (twilio_body("+14155550501"), kept["id"]),
        (twilio_body("+14155550505"), moved["id"]),
        (vapi_body("sip:RESTART@sip.example.com"), None),
    ):
        clash = await restarted.post("/phone-number", body)
        assert clash.status == 409
        assert owner is None or owner in messages(clash)
    # Numbers freed before the restart (deleted, or moved away from) are free after it.
    await restarted.create_number(twilio_body("+14155550503"))
    await restarted.create_number(twilio_body("+14155550504"))

    key = "twilio:AC0123456789abcdef0123456789abcdef:+14155550501"
    found: AnyPhoneNumber | None = await restarted.app[NUMBER_CACHE].get(key)
    assert found is not None
    assert found.id == kept["id"]
    assert found.name == "renamed"


async def test_a_second_worker_on_the_same_data_dir_refuses_to_start(
    start_api: StartApi, make_settings: MakeSettings
) -> None:
    """The embedded store serves one process: a second one fails at start-up, saying why."""
    settings = make_settings()
    await start_api(settings)
    # Not through `start_api`: the fixture closes only clients that started.
    second = TestClient(TestServer(create_app(settings)))
    try:
        with pytest.raises(StoreUnavailable, match="holds the data directory"):
            await second.start_server()
    finally:
        await second.close()
