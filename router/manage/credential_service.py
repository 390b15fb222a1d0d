"""The credentials service: provider keys and secrets the worker needs, per org."""

from __future__ import annotations

from typing import Any

import structlog

from router.errors import bad_request, not_found
from router.manage.documents import (
    Codec,
    check_uuid,
    merge_patch,
    new_id,
    now_utc,
    require_object,
    validate,
    validate_request,
)
from router.models.credentials import (
    CREATE_CREDENTIAL_MODELS,
    CREDENTIAL_MODELS,
    AnyCredential,
    TelnyxCredential,
    VonageCredential,
    credential_patch_model,
    credential_secret_fields,
)
from router.store.interface import KIND_CREDENTIAL, Doc, ListQuery, NotFound, Store

log = structlog.get_logger("router.audit")


class Credentials:
    """Create, read, update, delete and list an org's credentials."""

    def __init__(self, store: Store, codec: Codec) -> None:
        self._store = store
        self._codec = codec

    def from_doc(self, doc: Doc) -> AnyCredential:
        provider = doc["provider"]
        wire = self._codec.open(doc, credential_secret_fields(provider))
        return CREDENTIAL_MODELS[provider].model_validate(wire)

    def present(self, credential: AnyCredential) -> dict[str, Any]:
        return Codec.present(credential.wire(), credential_secret_fields(credential.provider))

    async def find(self, org_id: str, credential_id: str) -> AnyCredential | None:
        """The credential, or None (also for ids that are not UUIDs)."""
        doc = await self._store.get(KIND_CREDENTIAL, org_id, credential_id)
        return None if doc is None else self.from_doc(doc)

    async def get(self, org_id: str, credential_id: str) -> AnyCredential:
        check_uuid(credential_id, "credential")
        credential = await self.find(org_id, credential_id)
        if credential is None:
            raise not_found("Credential")
        return credential

    async def list(self, org_id: str, query: ListQuery) -> tuple[list[AnyCredential], int]:
        page = await self._store.list(KIND_CREDENTIAL, org_id, query)
        return [self.from_doc(doc) for doc in page.items], page.total

    async def create(self, org_id: str, body: Any) -> AnyCredential:
        data = require_object(body)
        provider = data.get("provider")
        if not isinstance(provider, str) or provider not in CREATE_CREDENTIAL_MODELS:
            raise bad_request(
                "provider must be one of the following values: "
                + ", ".join(CREATE_CREDENTIAL_MODELS)
            )
        dto = validate_request(CREATE_CREDENTIAL_MODELS[provider], data)
        moment = now_utc()
        record = validate(
            CREDENTIAL_MODELS[provider],
            {
                **dto.wire(),
                "id": new_id(),
                "orgId": org_id,
                "createdAt": moment,
                "updatedAt": moment,
            },
        )
        await self._store.create(KIND_CREDENTIAL, self._seal(record), None)
        log.info("credential.created", **self._audit(record))
        return record

    async def update(self, org_id: str, credential_id: str, body: Any) -> AnyCredential:
        current = await self.get(org_id, credential_id)
        dto = validate_request(credential_patch_model(current.provider), require_object(body))
        patch = dto.model_dump(mode="json", by_alias=True, exclude_unset=True)
        sent_provider = patch.pop("provider", None)
        if sent_provider is not None and sent_provider != current.provider:
            raise bad_request(f"provider cannot be changed (this credential is {current.provider})")
        new_account = patch.get("accountId")
        if (
            isinstance(current, TelnyxCredential)
            and current.account_id is not None
            and new_account not in (None, current.account_id)
        ):
            # Its numbers may be keyed by it: another value would lose them.
            raise bad_request(
                "accountId cannot be changed: it names the Telnyx account whose calls find "
                "this credential's numbers; create a credential for the other account and "
                "point the numbers at it"
            )
        new_key = patch.get("apiKey")
        if isinstance(current, VonageCredential) and new_key not in (None, current.api_key):
            # Its numbers are keyed by it (`vonage:<apiKey>:+E164`): calls would stop
            # finding them. A Vonage API key names an account; it is not rotated.
            raise bad_request(
                "apiKey cannot be changed: it names the Vonage account whose calls find "
                "this credential's numbers; create a credential for the other account and "
                "point the numbers at it"
            )
        required = tuple(
            info.alias or name
            for name, info in CREATE_CREDENTIAL_MODELS[current.provider].model_fields.items()
            if info.is_required()
        )
        merged = merge_patch(
            current.wire(),
            patch,
            required=required,
            secrets=credential_secret_fields(current.provider),
        )
        merged["updatedAt"] = now_utc(after=current.updated_at)
        record = validate(CREDENTIAL_MODELS[current.provider], merged)
        try:
            await self._store.replace(KIND_CREDENTIAL, self._seal(record), None)
        except NotFound:
            raise not_found("Credential") from None
        log.info("credential.updated", **self._audit(record), fields=sorted(patch))
        return record

    async def delete(self, org_id: str, credential_id: str) -> AnyCredential:
        # Read it first: one this worker cannot decrypt is a 500 before it is removed.
        await self.get(org_id, credential_id)
        doc = await self._store.delete(KIND_CREDENTIAL, org_id, credential_id)
        if doc is None:
            raise not_found("Credential")
        record = self.from_doc(doc)
        log.info("credential.deleted", **self._audit(record))
        return record

    def _seal(self, record: AnyCredential) -> Doc:
        return self._codec.seal(record.wire(), credential_secret_fields(record.provider))

    @staticmethod
    def _audit(record: AnyCredential) -> dict[str, Any]:
        return {"org_id": record.org_id, "credential_id": record.id, "provider": record.provider}
