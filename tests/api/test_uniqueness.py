"""The uniqueness race through HTTP: of concurrent claims of one number, exactly one wins."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from .conftest import Api, MakeSettings, StartApi, expect, messages, twilio_body, vapi_body

RACERS = 20


async def test_concurrent_creates_of_one_number_give_one_201(api: Api) -> None:
    """20 concurrent POSTs of the same number: one 201, nineteen 409s naming the winner."""
    replies = await asyncio.gather(
        *(
            api.post("/phone-number", twilio_body("+14155550180", name=f"r{i}"))
            for i in range(RACERS)
        )
    )
    assert Counter(r.status for r in replies) == {201: 1, 409: RACERS - 1}
    (winner,) = [r.body for r in replies if r.status == 201]
    assert all(winner["id"] in messages(r) for r in replies if r.status == 409)
    assert ids_of(await api.list_numbers()) == [winner["id"]]


async def test_concurrent_sip_uri_claims_in_any_case_give_one_201(api: Api) -> None:
    """The same race for a vapi sipUri, spelled in different cases."""
    uris = [f"sip:{'DESK' if i % 2 else 'desk'}@sip.example.com" for i in range(RACERS)]
    replies = await asyncio.gather(*(api.post("/phone-number", vapi_body(u)) for u in uris))
    assert Counter(r.status for r in replies) == {201: 1, 409: RACERS - 1}


async def test_concurrent_patches_onto_one_number_give_one_200(api: Api) -> None:
    """Numbers racing to move onto the same number: one moves, the others get 409 unchanged."""
    numbers = [await api.create_number(twilio_body(f"+1415555019{i}")) for i in range(5)]
    replies = await asyncio.gather(
        *(api.patch(f"/phone-number/{n['id']}", {"number": "+14155550199"}) for n in numbers)
    )
    assert Counter(r.status for r in replies) == {200: 1, 409: 4}
    listed = await api.list_numbers()
    assert sorted(n["number"] for n in listed).count("+14155550199") == 1
    # The losers still own their old numbers.
    for number, reply in zip(numbers, replies, strict=True):
        if reply.status == 409:
            assert expect(await api.get(f"/phone-number/{number['id']}"), 200) == number


@pytest.mark.parametrize("backend", ["redis"])
async def test_two_instances_on_one_redis_race_to_one_201(
    start_api: StartApi, make_settings: MakeSettings
) -> None:
    """Two workers on the same Redis, 10 concurrent POSTs each: exactly one 201 in all."""
    first = await start_api(make_settings())
    second = await start_api(make_settings())
    replies = await asyncio.gather(
        *(
            worker.post("/phone-number", twilio_body("+14155550181", name=f"w{i}"))
            for i in range(RACERS // 2)
            for worker in (first, second)
        )
    )
    assert Counter(r.status for r in replies) == {201: 1, 409: RACERS - 1}
    (winner,) = [r.body for r in replies if r.status == 201]
    assert all(winner["id"] in messages(r) for r in replies if r.status == 409)
    assert ids_of(await first.list_numbers()) == [winner["id"]]
    assert ids_of(await second.list_numbers()) == [winner["id"]]


def ids_of(items: list[dict[str, str]]) -> list[str]:
    return [item["id"] for item in items]
