"""Create, read, replace, delete and uniqueness claims, the same on both backends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from router.store.interface import (
    KIND_CREDENTIAL,
    KIND_PHONE_NUMBER,
    Conflict,
    Doc,
    Invalidation,
    ListQuery,
    NotFound,
    Store,
)

PN = KIND_PHONE_NUMBER
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def at(micros: int) -> str:
    return (EPOCH + timedelta(microseconds=micros)).isoformat()


def number(doc_id: str, org: str = "org-a", num: str = "+14155550100", **extra: Any) -> Doc:
    return {
        "id": doc_id,
        "orgId": org,
        "provider": "twilio",
        "number": num,
        "createdAt": at(0),
        "updatedAt": at(0),
        **extra,
    }


async def test_created_document_is_readable_by_id_and_by_its_key(store: Store) -> None:
    """A created number is returned by get (in its org only) and by lookup on its key."""
    doc = number("n1", name="Front desk", twilioAuthToken="secret")
    await store.create(PN, doc, "twilio:+14155550100")

    assert await store.get(PN, "org-a", "n1") == doc
    assert await store.lookup("twilio:+14155550100") == doc
    assert await store.get(PN, "org-b", "n1") is None
    assert await store.get(PN, "org-a", "missing") is None
    assert await store.lookup("twilio:+19999999999") is None


async def test_documents_are_copies_not_shared_objects(store: Store) -> None:
    """Mutating a document after writing or reading it does not change the stored one."""
    doc = number("n1", name="before")
    await store.create(PN, doc, None)
    doc["name"] = "mutated after create"
    read = await store.get(PN, "org-a", "n1")
    assert read is not None
    read["name"] = "mutated after get"
    again = await store.get(PN, "org-a", "n1")
    assert again is not None
    assert again["name"] == "before"


async def test_second_create_of_a_key_is_a_conflict_naming_the_owner(store: Store) -> None:
    """Keys are global: another org's create of a taken key gets Conflict(owner id, owner org)."""
    await store.create(PN, number("n1"), "twilio:+14155550100")

    with pytest.raises(Conflict) as caught:
        await store.create(PN, number("n2", org="org-b"), "twilio:+14155550100")

    assert (caught.value.key, caught.value.owner_id) == ("twilio:+14155550100", "n1")
    assert caught.value.owner_org_id == "org-a"
    assert "n1" in str(caught.value)
    assert await store.get(PN, "org-b", "n2") is None
    assert (await store.list(PN, "org-b", ListQuery())).total == 0


async def test_create_with_an_existing_id_is_refused(store: Store) -> None:
    """An id collision never overwrites the existing document."""
    await store.create(PN, number("n1", name="first"), None)
    with pytest.raises(Conflict):
        await store.create(PN, number("n1", name="second"), None)
    assert (await store.get(PN, "org-a", "n1") or {})["name"] == "first"


async def test_fifty_concurrent_creates_of_one_key_have_exactly_one_winner(store: Store) -> None:
    """Of 50 creates racing for one key, one succeeds, 49 get Conflict naming the winner."""

    async def attempt(i: int) -> str | None:
        try:
            await store.create(PN, number(f"n{i}"), "twilio:+14155550100")
        except Conflict as exc:
            return exc.owner_id
        return None

    owners = await asyncio.gather(*(attempt(i) for i in range(50)))

    winners = [f"n{i}" for i, owner in enumerate(owners) if owner is None]
    assert len(winners) == 1
    assert set(owners) == {None, winners[0]}
    assert (await store.lookup("twilio:+14155550100") or {})["id"] == winners[0]
    assert (await store.list(PN, "org-a", ListQuery())).total == 1


async def test_replace_moves_the_claim_to_the_new_key(store: Store) -> None:
    """After a replace with a new key the old key is free and the new one finds the number."""
    await store.create(PN, number("n1"), "twilio:+14155550100")
    moved = number("n1", num="+14155550199", updatedAt=at(5))

    await store.replace(PN, moved, "twilio:+14155550199")

    assert await store.lookup("twilio:+14155550100") is None
    assert await store.lookup("twilio:+14155550199") == moved
    assert await store.get(PN, "org-a", "n1") == moved
    await store.create(PN, number("n2"), "twilio:+14155550100")  # the old key is free again


async def test_replace_keeping_its_key_succeeds(store: Store) -> None:
    """A document may be replaced under the key it already holds."""
    await store.create(PN, number("n1"), "twilio:+14155550100")
    await store.replace(PN, number("n1", name="renamed"), "twilio:+14155550100")
    assert (await store.lookup("twilio:+14155550100") or {})["name"] == "renamed"


async def test_replace_without_a_key_releases_the_claim(store: Store) -> None:
    """Replacing with no key frees the key the document held."""
    await store.create(PN, number("n1"), "twilio:+14155550100")
    await store.replace(PN, number("n1"), None)
    assert await store.lookup("twilio:+14155550100") is None
    await store.create(PN, number("n2"), "twilio:+14155550100")


async def test_replace_onto_a_claimed_key_is_a_conflict_and_changes_nothing(store: Store) -> None:
    """Moving onto another document's key: Conflict, both documents and claims as they were."""
    first, second = number("n1"), number("n2", num="+14155550101")
    await store.create(PN, first, "twilio:+14155550100")
    await store.create(PN, second, "twilio:+14155550101")

    with pytest.raises(Conflict) as caught:
        await store.replace(PN, number("n2", num="+14155550100", name="x"), "twilio:+14155550100")

    assert caught.value.owner_id == "n1"
    assert await store.get(PN, "org-a", "n2") == second
    assert await store.lookup("twilio:+14155550100") == first
    assert await store.lookup("twilio:+14155550101") == second


async def test_replace_of_a_missing_or_foreign_document_is_not_found(store: Store) -> None:
    """Replace needs the document in that org; otherwise NotFound and nothing changes."""
    await store.create(PN, number("n1"), "twilio:+14155550100")
    with pytest.raises(NotFound):
        await store.replace(PN, number("ghost"), "twilio:+14155550111")
    with pytest.raises(NotFound):
        await store.replace(PN, number("n1", org="org-b"), "twilio:+14155550111")
    assert await store.lookup("twilio:+14155550111") is None
    assert (await store.get(PN, "org-a", "n1") or {})["orgId"] == "org-a"


async def test_delete_returns_the_document_and_frees_its_key(store: Store) -> None:
    """Delete removes the document, its index entries and its claim; a second delete is None."""
    doc = number("n1")
    await store.create(PN, doc, "twilio:+14155550100")

    assert await store.delete(PN, "org-b", "n1") is None  # another org's id: untouched
    assert await store.delete(PN, "org-a", "n1") == doc
    assert await store.delete(PN, "org-a", "n1") is None

    assert await store.get(PN, "org-a", "n1") is None
    assert await store.lookup("twilio:+14155550100") is None
    assert (await store.list(PN, "org-a", ListQuery())).total == 0
    await store.create(PN, number("n2"), "twilio:+14155550100")


async def test_kinds_are_separate(store: Store) -> None:
    """A credential and a number with the same id do not see each other."""
    await store.create(KIND_CREDENTIAL, {**number("same"), "provider": "telnyx"}, None)
    await store.create(PN, number("same"), None)
    assert (await store.get(KIND_CREDENTIAL, "org-a", "same") or {})["provider"] == "telnyx"
    assert (await store.get(PN, "org-a", "same") or {})["provider"] == "twilio"
    assert (await store.list(KIND_CREDENTIAL, "org-a", ListQuery())).total == 1


async def test_every_write_invalidates_its_id_and_keys_for_local_handlers(store: Store) -> None:
    """Each acknowledged write has told this process's handlers before it returns."""
    seen: list[Invalidation] = []
    store.on_invalidation(seen.append, lambda: None)

    await store.create(PN, number("n1"), "twilio:+1")
    assert seen[-1] == Invalidation(PN, "n1", "org-a", ("twilio:+1",))
    await store.replace(PN, number("n1"), "twilio:+2")
    assert seen[-1] == Invalidation(PN, "n1", "org-a", ("twilio:+1", "twilio:+2"))
    await store.delete(PN, "org-a", "n1")
    assert seen[-1] == Invalidation(PN, "n1", "org-a", ("twilio:+2",))


async def test_store_is_healthy_and_answers_ping_once_started(store: Store) -> None:
    """A started store reports healthy and its ping succeeds."""
    await store.ping()
    assert store.healthy
