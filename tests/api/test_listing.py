"""Listing: `GET /phone-number` and `GET /v2/phone-number` windows, order, search and filters."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest

from .conftest import Api, expect, rejected, twilio_body, vapi_body

TIME_FILTERS = [
    f"{field}{op}" for field in ("createdAt", "updatedAt") for op in ("Gt", "Lt", "Ge", "Le")
]


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


async def create_in_order(api: Api, count: int) -> list[dict[str, Any]]:
    """`count` twilio numbers created one after the other (distinct createdAt)."""
    created = []
    for i in range(count):
        created.append(await api.create_number(twilio_body(f"+1415555{i:04d}", name=f"n{i}")))
    return created


async def test_lists_are_newest_first_and_limit_defaults_to_100(api: Api) -> None:
    """101 numbers: both lists give the newest 100; v2's metadata says there is a page 2."""
    bodies = [twilio_body(f"+1415556{i:04d}") for i in range(101)]
    created = await asyncio.gather(*(api.create_number(b) for b in bodies))
    newest_first = sorted(created, key=lambda n: (n["createdAt"], n["id"]), reverse=True)

    listed = await api.list_numbers()
    assert len(listed) == 100
    assert [n["createdAt"] for n in listed] == [n["createdAt"] for n in newest_first[:100]]

    first = await api.page()
    assert [n["createdAt"] for n in first["results"]] == [n["createdAt"] for n in listed]
    assert first["metadata"] == {
        "itemsPerPage": 100,
        "totalItems": 101,
        "currentPage": 1,
        "totalPages": 2,
        "hasNextPage": True,
        "sortOrder": "DESC",
        "itemsBeyondRetention": False,
    }
    second = await api.page(page="2")
    assert len(second["results"]) == 1
    assert second["results"][0]["createdAt"] == newest_first[100]["createdAt"]
    assert second["metadata"]["currentPage"] == 2
    assert second["metadata"]["hasNextPage"] is False
    assert len(await api.list_numbers(limit="1000")) == 101


async def test_limit_bounds(api: Api) -> None:
    """`limit` 0 gives nothing; 1000 is the maximum; 1001, negatives and fractions are 400s."""
    created = await create_in_order(api, 3)
    assert await api.list_numbers(limit="0") == []
    empty = await api.page(limit="0")
    assert empty["results"] == []
    assert empty["metadata"]["totalItems"] == 3
    assert empty["metadata"]["itemsPerPage"] == 0
    assert ids(await api.list_numbers(limit="2")) == ids(created[::-1][:2])
    assert len(await api.list_numbers(limit="1000")) == 3
    for path in ("/phone-number", "/v2/phone-number"):
        assert "limit must not be greater than 1000" in rejected(
            await api.get(path, {"limit": "1001"})
        )
        for bad in ("-1", "1.5", "ten", "nan", "inf", "1e400"):
            assert "limit" in rejected(await api.get(path, {"limit": bad})), bad


async def test_pages_windows_and_metadata(api: Api) -> None:
    """Pages of 2 over 5 numbers, in both orders; a page past the end is empty, not an error."""
    created = await create_in_order(api, 5)
    newest = ids(created[::-1])
    pages = [await api.page(limit="2", page=str(p)) for p in (1, 2, 3)]
    assert [ids(p["results"]) for p in pages] == [newest[0:2], newest[2:4], newest[4:5]]
    assert [p["metadata"]["hasNextPage"] for p in pages] == [True, True, False]
    assert {p["metadata"]["totalPages"] for p in pages} == {3}

    oldest = ids(created)
    ascending = [await api.page(limit="2", page=str(p), sortOrder="ASC") for p in (1, 2, 3)]
    assert [ids(p["results"]) for p in ascending] == [oldest[0:2], oldest[2:4], oldest[4:5]]
    assert ascending[0]["metadata"]["sortOrder"] == "ASC"
    descending = await api.page(sortOrder="DESC")
    assert ids(descending["results"]) == newest
    assert descending["metadata"]["sortOrder"] == "DESC"

    beyond = await api.page(limit="2", page="9")
    assert beyond["results"] == []
    assert beyond["metadata"] == {
        "itemsPerPage": 2,
        "totalItems": 5,
        "currentPage": 9,
        "totalPages": 3,
        "hasNextPage": False,
        "sortOrder": "DESC",
        "itemsBeyondRetention": False,
    }

    # sortBy accepts the spec's values; numbers are always ordered by createdAt.
    for sort_by in ("createdAt", "duration", "cost"):
        assert ids((await api.page(sortBy=sort_by))["results"]) == newest
    for name, value in (("sortBy", "name"), ("sortOrder", "asc"), ("page", "0"), ("page", "x")):
        assert name in rejected(await api.get("/v2/phone-number", {name: value}))


async def test_search_matches_name_number_and_sip_uri(api: Api) -> None:
    """`search` is a partial, case-insensitive match over name, number and sipUri only."""
    desk = await api.create_number(twilio_body("+14155550170", name="Front Desk"))
    sales = await api.create_number(twilio_body("+16505550171", name="Sales"))
    sip = await api.create_number(vapi_body("sip:Support-Line@pbx.example.com", name="Help"))

    async def found(term: str) -> list[str]:
        page = await api.page(search=term)
        assert page["metadata"]["totalItems"] == len(page["results"])
        return sorted(ids(page["results"]))

    assert await found("front") == [desk["id"]]
    assert await found("DESK") == [desk["id"]]
    assert await found("555017") == sorted([desk["id"], sales["id"]])
    assert await found("+1650") == [sales["id"]]
    assert await found("support-line@PBX") == [sip["id"]]
    assert await found("e") == sorted([desk["id"], sales["id"], sip["id"]])
    assert await found("AC0123") == []  # twilioAccountSid is not searched
    assert await found("SECRET") == []  # nor are secrets
    assert await found("nothing like it") == []

    paged = await api.page(search="555017", limit="1", sortOrder="ASC")
    assert ids(paged["results"]) == [desk["id"]]
    assert paged["metadata"]["totalItems"] == 2
    assert paged["metadata"]["hasNextPage"] is True
    assert "search must be shorter than or equal to 100" in rejected(
        await api.get("/v2/phone-number", {"search": "x" * 101})
    )


async def test_created_and_updated_filters_are_exact(api: Api) -> None:
    """gt excludes the item whose timestamp equals the bound, ge includes it; lt/le mirror."""
    a, b, c = await create_in_order(api, 3)
    # updatedAt order b < a < c.
    a = expect(await api.patch(f"/phone-number/{a['id']}", {"name": "a2"}), 200)
    c = expect(await api.patch(f"/phone-number/{c['id']}", {"name": "c2"}), 200)

    cases = [
        ({"createdAtGt": b["createdAt"]}, [c]),
        ({"createdAtGe": b["createdAt"]}, [c, b]),
        ({"createdAtLt": b["createdAt"]}, [a]),
        ({"createdAtLe": b["createdAt"]}, [b, a]),
        ({"createdAtGt": a["createdAt"], "createdAtLt": c["createdAt"]}, [b]),
        ({"createdAtGe": c["createdAt"], "createdAtLe": a["createdAt"]}, []),
        ({"updatedAtGt": a["updatedAt"]}, [c]),
        ({"updatedAtGe": a["updatedAt"]}, [c, a]),
        ({"updatedAtLt": a["updatedAt"]}, [b]),
        ({"updatedAtLe": a["updatedAt"]}, [b, a]),
        ({"updatedAtGe": a["updatedAt"], "createdAtLt": c["createdAt"]}, [a]),
    ]
    for params, expected in cases:
        assert ids(await api.list_numbers(**params)) == ids(expected), params
        page = await api.page(**params)
        assert ids(page["results"]) == ids(expected), params
        assert page["metadata"]["totalItems"] == len(expected)
        assert ids((await api.page(sortOrder="ASC", **params))["results"]) == ids(expected)[::-1]


async def test_filters_accept_other_iso_forms_of_the_same_instant(api: Api) -> None:
    """`+00:00`, another offset, or a bare `+` (read as a space) name the same instant."""
    a, b = await create_in_order(api, 2)
    moment = datetime.fromisoformat(b["createdAt"])
    forms = [
        moment.isoformat(),  # +00:00
        moment.astimezone(datetime.fromisoformat("2024-01-01T00:00:00+02:00").tzinfo).isoformat(),
        moment.replace(tzinfo=None).isoformat(),  # no offset: UTC
    ]
    for form in forms:
        assert ids(await api.list_numbers(createdAtGe=form)) == [b["id"]], form
        assert ids(await api.list_numbers(createdAtLt=form)) == [a["id"]], form
    # A client that does not percent-encode `+` sends a space.
    raw = f"/phone-number?createdAtGe={moment.isoformat()}"
    assert ids(expect(await api.get(raw), 200)) == [b["id"]]


async def test_page_metadata_echoes_created_bounds(api: Api) -> None:
    """v2's metadata repeats `createdAtLe`/`createdAtGe` when they were given."""
    (a,) = await create_in_order(api, 1)
    page = await api.page(createdAtGe=a["createdAt"], createdAtLe=a["createdAt"])
    assert ids(page["results"]) == [a["id"]]
    assert page["metadata"]["createdAtGe"] == a["createdAt"]
    assert page["metadata"]["createdAtLe"] == a["createdAt"]


async def test_page_metadata_gives_a_bound_without_offset_as_utc(api: Api) -> None:
    """A bound sent without an offset is read as UTC, and echoed so: the spec's `date-time`
    needs an offset, so the bare text is not repeated as it came."""
    page = await api.page(createdAtGe="9999-12-31T23:59:59", createdAtLe="2024-05-01T10:00+02:00")
    assert page["metadata"]["createdAtGe"] == "9999-12-31T23:59:59Z"
    assert page["metadata"]["createdAtLe"] == "2024-05-01T10:00:00+02:00"


async def test_a_bound_whose_offset_has_seconds_is_refused(api: Api) -> None:
    """Python reads `+01:00:30`, RFC 3339 (the API's date-time) has no such offset: 400."""
    reply = await api.get("/v2/phone-number", {"createdAtGe": "2024-05-01T10:00:00+01:00:30"})
    assert rejected(reply) == "createdAtGe must have an offset in whole minutes"


@pytest.mark.parametrize("name", TIME_FILTERS)
async def test_invalid_dates_are_400(api: Api, name: str) -> None:
    """A filter that is not an ISO 8601 date is a 400 naming the parameter; so is one
    given empty (`?updatedAtLt=`), which is no date either."""
    for value in ("yesterday", "2024-13-01", "1700000000", "2024-01-01T25:00:00Z", ""):
        for path in ("/phone-number", "/v2/phone-number", "/credential"):
            reply = await api.get(path, {name: value})
            assert f"{name} must be a valid ISO 8601 date string" in rejected(reply), value


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/phone-number", "limit"),
        ("/v2/phone-number", "limit"),
        ("/v2/phone-number", "page"),
        ("/credential", "limit"),
    ],
)
async def test_an_empty_limit_or_page_is_400(api: Api, path: str, name: str) -> None:
    """`?limit=` is no number, as `?updatedAtLt=` is no date: a 400 naming it, not the
    default (the document declares a number)."""
    assert rejected(await api.get(path, {name: ""})) == f"{name} must be a number"


async def test_unknown_query_parameters_are_ignored(api: Api) -> None:
    """As documented in the README: unknown query parameters do not fail a listing."""
    await create_in_order(api, 1)
    assert len(await api.list_numbers(foo="bar")) == 1
