"""What phone numbers and credentials share: secrets in and out of the store, PATCH merges."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from router.errors import ApiError, bad_request, validation_messages
from router.manage.secrecy import (
    ENCRYPTED_PREFIX,
    SecretBox,
    keep_masked,
    map_paths,
    mask,
    path_values,
)
from router.models.wire import API_INPUT
from router.store.interface import Conflict, Doc

M = TypeVar("M", bound=BaseModel)


def new_id() -> str:
    return str(uuid.uuid4())


def now_utc(after: datetime | None = None) -> datetime:
    """The current time, strictly after `after` so `updatedAt` filters see every write."""
    moment = datetime.now(UTC)
    if after is not None and moment <= after:
        moment = after + timedelta(microseconds=1)
    return moment


def require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object")
    return body


def validate(model: type[M], data: Any, prefix: str = "") -> M:
    """`model.model_validate` of a document router builds (a record from a request that
    passed `validate_request`), with a 400 in the NestJS shape on failure."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(400, validation_messages(exc, prefix, data)) from None


def validate_request(model: type[M], data: Any, prefix: str = "") -> M:
    """`model.model_validate` of a request body, with a 400 in the NestJS shape on failure.

    Strict: JSON types as the API's validators take them (`"no"`, `0` and `"20"` are not
    booleans or integers, as NestJS's class-validator refuses them), and the checks of
    saved input apply (`router.models.wire.for_api`)."""
    try:
        return model.model_validate(data, strict=True, context={API_INPUT: True})
    except ValidationError as exc:
        raise ApiError(400, validation_messages(exc, prefix, data)) from None


def check_uuid(doc_id: str, what: str) -> None:
    try:
        uuid.UUID(doc_id)
    except ValueError:
        raise bad_request(f"{what} id must be a UUID") from None


class Codec:
    """Secrets between a record and its stored or presented forms."""

    def __init__(self, box: SecretBox) -> None:
        self._box = box

    def seal(self, wire: dict[str, Any], paths: tuple[str, ...]) -> Doc:
        """The stored form: secret fields encrypted (when a key is configured).

        A secret that itself starts with the encryption marker is refused: stored, it
        would read back as ciphertext and fail to decrypt on every call.
        """
        marked = [
            where
            for path in paths
            for where, value in path_values(wire, path)
            if value.startswith(ENCRYPTED_PREFIX)
        ]
        if marked:
            raise bad_request(*(f"{p} must not start with {ENCRYPTED_PREFIX}" for p in marked))
        return map_paths(wire, paths, self._box.encrypt)

    def open(self, doc: Doc, paths: tuple[str, ...]) -> dict[str, Any]:
        """The wire form of a stored document, secrets in clear; `SecretKeyError` when they
        do not decrypt (the API answers 500, a webhook the provider's reject)."""
        return map_paths(doc, paths, self._box.decrypt)

    @staticmethod
    def present(wire: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
        """The response form: every secret masked, length kept."""
        return map_paths(wire, paths, mask)


def merge_patch(
    current: dict[str, Any],
    patch: dict[str, Any],
    *,
    required: tuple[str, ...],
    secrets: tuple[str, ...],
) -> dict[str, Any]:
    """Apply a PATCH body (wire form, explicit nulls kept) to a record's wire form.

    `null` clears a field; fields the record must keep cannot be cleared. A secret sent
    back exactly as we masked it (a client echoing a GET) leaves the stored secret as is.
    """
    merged = dict(current)
    cleared = [k for k, v in patch.items() if v is None and k in required]
    if cleared:
        raise bad_request(*(f"{k} cannot be removed" for k in cleared))
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    # A secret is changed in place below: the patch's values must not be.
    merged = copy.deepcopy(merged)
    keep_masked(current, merged, secrets)
    return merged


def conflict_error(exc: Conflict, org_id: str, what: str) -> ApiError:
    """409 naming the owner; an owner in another org is not named (ids do not leak across orgs)."""
    if exc.owner_org_id == org_id:
        return ApiError(409, f"{what} is already in use by phone number {exc.owner_id}")
    return ApiError(409, f"{what} is already in use by another organization")
