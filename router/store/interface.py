"""The store interface every backend implements, and the errors it raises.

The store holds JSON documents (dicts in wire form: camelCase, `id`, `orgId`,
`createdAt`, `updatedAt` as ISO 8601 strings) of a few kinds. It knows nothing of
pydantic models or HTTP: the service layer above validates, encrypts and masks.

Uniqueness: a document may claim one *unique key* (the key inbound calls find a
number by, e.g. `twilio:+14155551234`). Keys are global across orgs: a called
number routes one way only. Claims are atomic: of two concurrent writes that claim
one key, exactly one succeeds and the other gets `Conflict`.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

Doc = dict[str, Any]

KIND_PHONE_NUMBER = "phone-number"
KIND_CREDENTIAL = "credential"
KINDS = (KIND_PHONE_NUMBER, KIND_CREDENTIAL)


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """The backend cannot be reached; the API answers 503, nothing was written."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Conflict(StoreError):
    """A unique key is already claimed by another document."""

    def __init__(self, key: str, owner_id: str, owner_org_id: str) -> None:
        super().__init__(f"{key} is already claimed by {owner_id}")
        self.key = key
        self.owner_id = owner_id
        self.owner_org_id = owner_org_id


class NotFound(StoreError):
    """No document of that kind and id in that org."""


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A listing: time-range filters (epoch microseconds), search, order and window."""

    created_gt: int | None = None
    created_lt: int | None = None
    created_ge: int | None = None
    created_le: int | None = None
    updated_gt: int | None = None
    updated_lt: int | None = None
    updated_ge: int | None = None
    updated_le: int | None = None
    # Case-insensitive substring over the document's `searchable` fields.
    search: str | None = None
    descending: bool = True
    offset: int = 0
    limit: int = 100

    def created_bounds(self) -> tuple[int | None, int | None]:
        """Inclusive (low, high) createdAt bounds; None is open. Scores are whole microseconds."""
        return _bounds(self.created_gt, self.created_ge, self.created_lt, self.created_le)

    def updated_bounds(self) -> tuple[int | None, int | None]:
        """Inclusive (low, high) updatedAt bounds; None is open."""
        return _bounds(self.updated_gt, self.updated_ge, self.updated_lt, self.updated_le)


def _bounds(
    gt: int | None, ge: int | None, lt: int | None, le: int | None
) -> tuple[int | None, int | None]:
    # Scores are integers, so "greater than x" is "at least x + 1": one inclusive form.
    lows = [v for v in (ge, None if gt is None else gt + 1) if v is not None]
    highs = [v for v in (le, None if lt is None else lt - 1) if v is not None]
    return (max(lows) if lows else None, min(highs) if highs else None)


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Doc]
    total: int


@dataclass(frozen=True, slots=True)
class Invalidation:
    """Published after every acknowledged write: drop these ids and lookup keys."""

    kind: str
    id: str
    org_id: str
    keys: tuple[str, ...] = field(default_factory=tuple)


InvalidationHandler = Callable[[Invalidation], None]
ResetHandler = Callable[[], None]


def to_micros(value: str | datetime) -> int:
    """Epoch microseconds of an ISO 8601 timestamp (the index score)."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


class Store(abc.ABC):
    """What the service layer needs from a backend."""

    # Fields of a document `ListQuery.search` looks in, per kind.
    SEARCHABLE: ClassVar[dict[str, tuple[str, ...]]] = {
        KIND_PHONE_NUMBER: ("name", "number", "sipUri"),
        KIND_CREDENTIAL: ("name",),
    }

    @classmethod
    def search_text(cls, kind: str, doc: Doc) -> str:
        """The lower-cased text `ListQuery.search` looks in: searchable fields joined by \\x1f."""
        values = (doc.get(name) for name in cls.SEARCHABLE.get(kind, ()))
        return "\x1f".join(value.lower() for value in values if isinstance(value, str))

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect (bounded retries), load, start listening for invalidations."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop listening and release connections."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless the backend answers now."""

    @abc.abstractmethod
    async def create(self, kind: str, doc: Doc, unique_key: str | None) -> None:
        """Store a new document, claiming `unique_key`; `Conflict` if it is taken."""

    @abc.abstractmethod
    async def get(self, kind: str, org_id: str, doc_id: str) -> Doc | None:
        """The document, or None when absent or in another org."""

    @abc.abstractmethod
    async def replace(self, kind: str, doc: Doc, unique_key: str | None) -> None:
        """Overwrite an existing document, moving its claim to `unique_key` atomically.

        `NotFound` if it is gone (or in another org), `Conflict` if the new key is
        claimed by another document; in both cases nothing changes.
        """

    @abc.abstractmethod
    async def delete(self, kind: str, org_id: str, doc_id: str) -> Doc | None:
        """Remove the document and its claim; the removed document, or None."""

    @abc.abstractmethod
    async def list(self, kind: str, org_id: str, query: ListQuery) -> Page:
        """Documents of an org in `createdAt` order, filtered and windowed by an index."""

    @abc.abstractmethod
    async def lookup(self, unique_key: str) -> Doc | None:
        """The phone-number document that claims this key, in any org."""

    @abc.abstractmethod
    def on_invalidation(self, handler: InvalidationHandler, reset: ResetHandler) -> None:
        """Call `handler` for every write by any worker; `reset` when some may be missed."""

    @property
    @abc.abstractmethod
    def healthy(self) -> bool:
        """Whether the backend answered its last call (and, for Redis, the subscription is up)."""


OnStartup = Callable[[], Awaitable[None]]
