"""Org isolation: a key sees only its org; another org's id is a 404, never a 403."""

from __future__ import annotations

from typing import Any

from .conftest import (
    DEFAULT_ORG,
    OTHER_ORG,
    Api,
    expect,
    rejected,
    telnyx_body,
    telnyx_credential,
    trunk_credential,
    twilio_body,
    vapi_body,
    vonage_body,
    vonage_credential,
)


async def seed_org(api: Api) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Numbers of every provider and their credentials, in the org of `api`."""
    telnyx = await api.create_credential(telnyx_credential())
    vonage = await api.create_credential(vonage_credential())
    trunk = await api.create_credential(trunk_credential())
    numbers = [
        await api.create_number(twilio_body("+14155550201", name="Org A line")),
        await api.create_number(telnyx_body(telnyx["id"], "+14155550202")),
        await api.create_number(vonage_body(vonage["id"], "+14155550203")),
        await api.create_number(vapi_body("sip:org-a@sip.example.com")),
        await api.create_number(
            {"provider": "byo-phone-number", "number": "+14155550204", "credentialId": trunk["id"]}
        ),
    ]
    return numbers, [telnyx, vonage, trunk]


async def test_another_orgs_ids_are_404_for_every_operation(api: Api, other: Api) -> None:
    """Org B gets 404 on GET/PATCH/DELETE of org A's numbers and credentials; A's data stays."""
    numbers, credentials = await seed_org(api)
    for kind, items in (("phone-number", numbers), ("credential", credentials)):
        for item in items:
            path = f"/{kind}/{item['id']}"
            assert rejected(await other.get(path), 404).endswith("not found")
            assert rejected(await other.patch(path, {"name": "hijacked"}), 404).endswith(
                "not found"
            )
            assert rejected(await other.delete(path), 404).endswith("not found")
            assert expect(await api.get(path), 200) == item


async def test_lists_show_only_the_callers_org(api: Api, other: Api) -> None:
    """Neither list nor search of org B shows org A's numbers or credentials, and vice versa."""
    numbers, _ = await seed_org(api)
    assert await other.list_numbers() == []
    assert (await other.page())["results"] == []
    assert (await other.page())["metadata"]["totalItems"] == 0
    assert (await other.page(search="Org A"))["results"] == []
    assert expect(await other.get("/credential"), 200) == []

    mine = await other.create_number(twilio_body("+14155550299", name="Org B line"))
    assert mine["orgId"] == OTHER_ORG
    assert await other.list_numbers() == [mine]
    assert mine["id"] not in {n["id"] for n in await api.list_numbers()}
    assert len(await api.list_numbers()) == len(numbers)
    assert {n["orgId"] for n in await api.list_numbers()} == {DEFAULT_ORG}


async def test_numbers_cannot_use_another_orgs_credential(api: Api, other: Api) -> None:
    """A credentialId of another org is as unknown as a made-up one."""
    _, (telnyx, vonage, _trunk) = await seed_org(api)
    for body in (telnyx_body(telnyx["id"], "+14155550290"), vonage_body(vonage["id"])):
        assert "does not name a credential of this org" in rejected(
            await other.post("/phone-number", body)
        )
    own = await other.create_credential(telnyx_credential())
    number = await other.create_number(telnyx_body(own["id"], "+14155550291"))
    moved = await other.patch(f"/phone-number/{number['id']}", {"credentialId": telnyx["id"]})
    assert "does not name a credential of this org" in rejected(moved)
