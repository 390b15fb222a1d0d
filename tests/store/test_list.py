"""Listing: createdAt order both ways, windows, exact time filters, search; both backends."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from router.store.interface import KIND_PHONE_NUMBER, Doc, ListQuery, Store, to_micros

PN = KIND_PHONE_NUMBER
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
BASE = to_micros(EPOCH)


def at(micros: int) -> str:
    return (EPOCH + timedelta(microseconds=micros)).isoformat()


def number(doc_id: str, created: int, updated: int, **extra: str) -> Doc:
    return {
        "id": doc_id,
        "orgId": "org-a",
        "provider": "twilio",
        "number": f"+1415555{created % 10_000:04d}",
        "createdAt": at(created),
        "updatedAt": at(updated),
        **extra,
    }


async def ids(store: Store, **query: int | str | bool | None) -> list[str]:
    page = await store.list(PN, "org-a", ListQuery(**query))  # type: ignore[arg-type]
    return [doc["id"] for doc in page.items]


@pytest.fixture
async def five(store: Store) -> Store:
    """a..e created 10 µs apart; updated in the order c, a, e, b, d."""
    updated = {"a": 20, "b": 40, "c": 10, "d": 50, "e": 30}
    for i, doc_id in enumerate("abcde"):
        await store.create(PN, number(doc_id, (i + 1) * 10, 100 + updated[doc_id]), None)
    await store.create(PN, {**number("other", 15, 15), "orgId": "org-b"}, None)
    return store


async def test_newest_first_by_default_and_oldest_first_on_request(five: Store) -> None:
    """Default order is createdAt descending; ascending on request; only the org's documents."""
    assert await ids(five) == ["e", "d", "c", "b", "a"]
    assert await ids(five, descending=False) == ["a", "b", "c", "d", "e"]
    assert (await five.list(PN, "org-a", ListQuery())).total == 5


async def test_offset_and_limit_window_the_order_and_total_counts_all(five: Store) -> None:
    """offset/limit pick a window of the ordered result; total is the unwindowed count."""
    assert await ids(five, offset=1, limit=2) == ["d", "c"]
    assert await ids(five, offset=1, limit=2, descending=False) == ["b", "c"]
    assert await ids(five, offset=4, limit=10) == ["a"]
    assert await ids(five, offset=5, limit=10) == []
    assert await ids(five, offset=0, limit=0) == []
    page = await five.list(PN, "org-a", ListQuery(offset=3, limit=1))
    assert ([d["id"] for d in page.items], page.total) == (["b"], 5)


async def test_created_filters_are_exact_at_the_boundary(five: Store) -> None:
    """gt/lt exclude the item at exactly that time, ge/le include it."""
    c = BASE + 30
    assert await ids(five, created_gt=c) == ["e", "d"]
    assert await ids(five, created_ge=c) == ["e", "d", "c"]
    assert await ids(five, created_lt=c) == ["b", "a"]
    assert await ids(five, created_le=c) == ["c", "b", "a"]
    assert await ids(five, created_gt=BASE + 10, created_lt=BASE + 50) == ["d", "c", "b"]
    assert await ids(five, created_ge=c, created_le=c, descending=False) == ["c"]
    assert await ids(five, created_gt=c, created_lt=c) == []
    # The tighter of two bounds on one side wins.
    assert await ids(five, created_gt=c, created_ge=BASE) == ["e", "d"]
    page = await five.list(PN, "org-a", ListQuery(created_gt=c, limit=1))
    assert page.total == 2


async def test_updated_filters_are_exact_and_keep_created_order(five: Store) -> None:
    """updatedAt bounds select by update time; the result stays in createdAt order."""
    assert await ids(five, updated_gt=BASE + 130) == ["d", "b"]
    assert await ids(five, updated_ge=BASE + 130) == ["e", "d", "b"]
    assert await ids(five, updated_lt=BASE + 120) == ["c"]
    assert await ids(five, updated_le=BASE + 120, descending=False) == ["a", "c"]
    assert await ids(five, updated_ge=BASE + 120, created_lt=BASE + 50) == ["d", "b", "a"]
    page = await five.list(PN, "org-a", ListQuery(updated_ge=BASE + 120, offset=1, limit=2))
    assert ([d["id"] for d in page.items], page.total) == (["d", "b"], 4)


async def test_search_is_a_case_insensitive_substring_over_searchable_fields(store: Store) -> None:
    """search matches name, number or sipUri, ignoring case; other fields are not searched."""
    await store.create(PN, number("n1", 1, 1, name="Front Desk"), None)
    await store.create(PN, number("n2", 2, 2, name="Back office"), None)
    await store.create(
        PN, {**number("n3", 3, 3), "provider": "vapi", "sipUri": "sip:Desk@x.io"}, None
    )
    await store.create(PN, number("n4", 4, 4, assistantId="desk-assistant"), None)

    assert await ids(store, search="DESK") == ["n3", "n1"]
    assert await ids(store, search="desk", descending=False) == ["n1", "n3"]
    assert await ids(store, search="+1415555") == ["n4", "n3", "n2", "n1"]
    assert await ids(store, search="0003") == ["n3"]
    assert await ids(store, search="nowhere") == []
    page = await store.list(PN, "org-a", ListQuery(search="desk", limit=1))
    assert ([d["id"] for d in page.items], page.total) == (["n3"], 2)
    assert await ids(store, search="desk", created_gt=BASE + 1) == ["n3"]


async def test_equal_creation_times_are_ordered_by_id_on_both_backends(store: Store) -> None:
    """Ties on createdAt order by id (Redis's sorted-set rule), reversed when descending."""
    for doc_id in ("b", "c", "a"):
        await store.create(PN, number(doc_id, 7, 7), None)
    assert await ids(store, descending=False) == ["a", "b", "c"]
    assert await ids(store) == ["c", "b", "a"]
    assert await ids(store, offset=1, limit=1) == ["b"]


async def test_random_queries_match_a_brute_force_model(store: Store) -> None:
    """Seeded random documents and queries: every page equals filtering and sorting by hand."""
    rng = random.Random(20240101)
    docs = []
    for i in range(60):
        created = rng.randrange(0, 40)  # few distinct values: many ties and boundaries
        doc = number(f"id{i:02d}", created, created + rng.randrange(0, 40))
        doc["name"] = rng.choice(["Alpha", "beta", "GAMMA", "delta"])
        docs.append(doc)
        await store.create(PN, doc, None)

    def bound() -> int | None:
        return None if rng.random() < 0.6 else BASE + rng.randrange(-2, 82)

    for _ in range(300):
        query = ListQuery(
            created_gt=bound(),
            created_lt=bound(),
            created_ge=bound(),
            created_le=bound(),
            updated_gt=bound(),
            updated_lt=bound(),
            updated_ge=bound(),
            updated_le=bound(),
            search=rng.choice([None, None, "a", "ALPHA", "ta", "zz"]),
            descending=rng.random() < 0.5,
            offset=rng.randrange(0, 20),
            limit=rng.randrange(0, 25),
        )
        expected = sorted(
            (d for d in docs if _matches(d, query)),
            key=lambda d: (to_micros(d["createdAt"]), d["id"]),
            reverse=query.descending,
        )
        page = await store.list(PN, "org-a", query)
        window = expected[query.offset : query.offset + query.limit]
        assert [d["id"] for d in page.items] == [d["id"] for d in window], query
        assert page.total == len(expected), query


def _matches(doc: Doc, query: ListQuery) -> bool:
    created, updated = to_micros(doc["createdAt"]), to_micros(doc["updatedAt"])
    for value, lowest, highest in (
        (created, query.created_gt, query.created_lt),
        (updated, query.updated_gt, query.updated_lt),
    ):
        if (lowest is not None and value <= lowest) or (highest is not None and value >= highest):
            return False
    for value, lowest, highest in (
        (created, query.created_ge, query.created_le),
        (updated, query.updated_ge, query.updated_le),
    ):
        if (lowest is not None and value < lowest) or (highest is not None and value > highest):
            return False
    text = f"{doc.get('name', '')}\x1f{doc['number']}".lower()
    return query.search is None or query.search.lower() in text


async def test_rank_windows_match_a_full_scan_for_every_bound_and_order(store: Store) -> None:
    """Windows taken by rank inside a createdAt range equal slicing the whole ordered range,
    for inclusive and exclusive bounds, both orders, and windows past the end."""
    created = [i * 10 for i in range(60)]
    for i, micros in enumerate(created):
        await store.create(PN, number(f"r{i:03d}", micros, micros), None)
    stamps = [BASE + micros for micros in created]
    cases: list[dict[str, int]] = [
        {},
        {"created_ge": stamps[10]},
        {"created_gt": stamps[10], "created_lt": stamps[50]},
        {"created_le": stamps[30]},
    ]
    for bounds in cases:
        expected = [
            f"r{i:03d}"
            for i, t in enumerate(stamps)
            if t >= bounds.get("created_ge", t)
            and t > bounds.get("created_gt", t - 1)
            and t < bounds.get("created_lt", t + 1)
            and t <= bounds.get("created_le", t)
        ]
        for descending in (False, True):
            ordered = expected[::-1] if descending else expected
            for offset in (0, 5, len(ordered) - 3, len(ordered) + 5):
                window = ListQuery(
                    created_gt=bounds.get("created_gt"),
                    created_lt=bounds.get("created_lt"),
                    created_ge=bounds.get("created_ge"),
                    created_le=bounds.get("created_le"),
                    descending=descending,
                    offset=offset,
                    limit=7,
                )
                page = await store.list(PN, "org-a", window)
                assert page.total == len(ordered)
                assert [d["id"] for d in page.items] == ordered[offset : offset + 7]
