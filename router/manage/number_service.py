"""The phone-number service: validation, uniqueness, secrets and audit around the store."""

from __future__ import annotations

import secrets as random_tokens
from typing import TYPE_CHECKING, Any

import structlog

from router.errors import ApiError, bad_request, not_found
from router.manage.credential_service import Credentials
from router.manage.documents import (
    Codec,
    check_uuid,
    conflict_error,
    merge_patch,
    new_id,
    now_utc,
    require_object,
    validate,
    validate_request,
)
from router.models.credentials import TelnyxCredential, VonageCredential
from router.models.phone_numbers import (
    PROVIDERS,
    RECORD_MODELS,
    REQUIRED_FIELDS,
    UPDATE_MODELS,
    AnyPhoneNumber,
    ByoPhoneNumber,
    CreateByoPhoneNumberDTO,
    CreatePlivoPhoneNumberDTO,
    CreateTelnyxPhoneNumberDTO,
    CreateTwilioPhoneNumberDTO,
    CreateVapiPhoneNumberDTO,
    CreateVonagePhoneNumberDTO,
    ImportTwilioPhoneNumberDTO,
    TelnyxPhoneNumber,
    VapiPhoneNumber,
    VonagePhoneNumber,
    account_lookup_key,
    lookup_key,
    number_only_key,
    secret_fields,
)
from router.models.wire import WireModel
from router.pipeline.address_policy import AddressPolicy
from router.store.interface import (
    KIND_CREDENTIAL,
    KIND_PHONE_NUMBER,
    Conflict,
    Doc,
    ListQuery,
    NotFound,
    Store,
)

if TYPE_CHECKING:
    from router.manage.twilio_wiring import TwilioWiring

log = structlog.get_logger("router.audit")

CREATE_MODELS: dict[str, type[WireModel]] = {
    "twilio": CreateTwilioPhoneNumberDTO,
    "telnyx": CreateTelnyxPhoneNumberDTO,
    "vonage": CreateVonagePhoneNumberDTO,
    "plivo": CreatePlivoPhoneNumberDTO,
    "vapi": CreateVapiPhoneNumberDTO,
    "byo-phone-number": CreateByoPhoneNumberDTO,
}
# Which credential provider a number's `credentialId` must point at.
CREDENTIAL_PROVIDER = {
    "telnyx": "telnyx",
    "vonage": "vonage",
    "plivo": "plivo",
    "byo-phone-number": "byo-sip-trunk",
}


def parse_number(wire: dict[str, Any]) -> AnyPhoneNumber:
    """A stored number (secrets in clear) as its record model."""
    return RECORD_MODELS[wire["provider"]].model_validate(wire)


def _describe(number: AnyPhoneNumber) -> str:
    """How a 409 names the contested key."""
    if isinstance(number, VapiPhoneNumber):
        return f"sipUri {number.sip_uri}"
    if isinstance(number, ByoPhoneNumber):
        return f"number {number.number} on credential {number.credential_id}"
    return f"{number.provider} number {number.number}"


class PhoneNumbers:
    """Create, read, update, delete and list an org's phone numbers."""

    def __init__(
        self,
        store: Store,
        codec: Codec,
        credentials: Credentials,
        *,
        sip_domain: str,
        wiring: TwilioWiring | None = None,
        addresses: AddressPolicy | None = None,
    ) -> None:
        self._store = store
        self._codec = codec
        self._credentials = credentials
        self._sip_domain = sip_domain
        # Points provider numbers at this router after each write (twilio_wiring); None: off.
        self._wiring = wiring
        # Refuses a server.url at a forbidden address when saved; None: only when called.
        self._addresses = addresses

    # --- reading ------------------------------------------------------------------------------

    def from_doc(self, doc: Doc) -> AnyPhoneNumber:
        provider = doc.get("provider")
        if provider not in RECORD_MODELS:
            raise ApiError(500, f"stored phone number has unknown provider {provider!r}")
        return parse_number(self._codec.open(doc, secret_fields(provider)))

    def present(self, number: AnyPhoneNumber) -> dict[str, Any]:
        """The response body: wire form, secrets masked."""
        return Codec.present(number.wire(), secret_fields(number.provider))

    async def get(self, org_id: str, number_id: str) -> AnyPhoneNumber:
        check_uuid(number_id, "phone number")
        doc = await self._store.get(KIND_PHONE_NUMBER, org_id, number_id)
        if doc is None:
            raise not_found("Phone number")
        return self.from_doc(doc)

    async def list(self, org_id: str, query: ListQuery) -> tuple[list[AnyPhoneNumber], int]:
        page = await self._store.list(KIND_PHONE_NUMBER, org_id, query)
        return [self.from_doc(doc) for doc in page.items], page.total

    # --- writing ------------------------------------------------------------------------------

    async def create(self, org_id: str, body: Any) -> AnyPhoneNumber:
        data = require_object(body)
        provider = data.get("provider")
        if not isinstance(provider, str) or provider not in CREATE_MODELS:
            raise bad_request(
                f"provider must be one of the following values: {', '.join(PROVIDERS)}"
            )
        dto = validate_request(CREATE_MODELS[provider], data)
        return await self._insert(org_id, dto.wire())

    async def import_twilio(self, org_id: str, body: Any) -> AnyPhoneNumber:
        dto = validate_request(ImportTwilioPhoneNumberDTO, require_object(body))
        return await self._insert(org_id, dto.to_create().wire())

    async def _insert(self, org_id: str, wire: dict[str, Any]) -> AnyPhoneNumber:
        provider = wire["provider"]
        if wire.get("numberDesiredAreaCode") is not None:
            raise bad_request(
                "numberDesiredAreaCode: this deployment cannot buy numbers; "
                "create the number with its sipUri instead"
            )
        if provider == "vapi" and not wire.get("sipUri"):
            wire["sipUri"] = f"sip:{random_tokens.token_hex(8)}@{self._sip_domain}"
        await self._check_credential(org_id, provider, wire.get("credentialId"))
        moment = now_utc()
        record = validate(
            RECORD_MODELS[provider],
            {**wire, "id": new_id(), "orgId": org_id, "createdAt": moment, "updatedAt": moment},
        )
        self._check_server(record)
        self._check_transfers(record)
        key = await self._write(org_id, record, create=True)
        if self._wiring is not None:  # stored first (the claim), then wired, else deleted
            await self._wiring.wire(
                record, undo=lambda: self._store.delete(KIND_PHONE_NUMBER, org_id, record.id)
            )
        log.info("phone_number.created", **self._audit(record, key))
        return record

    async def update(self, org_id: str, number_id: str, body: Any) -> AnyPhoneNumber:
        current = await self.get(org_id, number_id)
        data = require_object(body)
        dto = validate_request(UPDATE_MODELS[current.provider], data)
        patch = dto.model_dump(mode="json", by_alias=True, exclude_unset=True)
        sent_provider = patch.pop("provider", None)
        if sent_provider is not None and sent_provider != current.provider:
            raise bad_request(f"provider cannot be changed (this number is {current.provider})")
        if patch.get("numberDesiredAreaCode") is not None:
            raise bad_request("numberDesiredAreaCode: this deployment cannot buy numbers")
        required = REQUIRED_FIELDS[current.provider] + (
            ("sipUri",) if current.provider == "vapi" else ()
        )
        merged = merge_patch(
            current.wire(), patch, required=required, secrets=secret_fields(current.provider)
        )
        if "credentialId" in patch:
            await self._check_credential(org_id, current.provider, merged.get("credentialId"))
        merged["updatedAt"] = now_utc(after=current.updated_at)
        record = validate(RECORD_MODELS[current.provider], merged)
        if "server" in patch:
            self._check_server(record)
        self._check_transfers(record)
        key = await self._write(org_id, record, create=False)
        if self._wiring is not None:  # re-wired when it matters, else put back as it was
            await self._wiring.rewire(
                current, record, undo=lambda: self._write(org_id, current, create=False)
            )
        log.info("phone_number.updated", **self._audit(record, key), fields=sorted(patch))
        return record

    async def delete(self, org_id: str, number_id: str) -> AnyPhoneNumber:
        # Read it first: a record this worker cannot read (a wrong ROUTER_SECRET_KEY) is a
        # 500 before anything is removed, not a removal reported as a 500.
        await self.get(org_id, number_id)
        doc = await self._store.delete(KIND_PHONE_NUMBER, org_id, number_id)
        if doc is None:
            raise not_found("Phone number")
        record = self.from_doc(doc)
        log.info("phone_number.deleted", **self._audit(record, await self._key(org_id, record)))
        return record

    @staticmethod
    def _check_transfers(record: AnyPhoneNumber) -> None:
        """400 for a transfer destination the number's provider cannot dial."""
        if isinstance(record, VonagePhoneNumber):
            from router.providers.vonage import transfer_refusal

            refusal = transfer_refusal(record)
            if refusal is not None:
                raise bad_request(refusal)

    def _check_server(self, record: AnyPhoneNumber) -> None:
        """400 for a server.url the address policy refuses as written (its host is not
        resolved here: the client checks every resolved address when it calls)."""
        url = record.server.url if record.server is not None else None
        if self._addresses is not None and url:
            refusal = self._addresses.url_refusal(url)
            if refusal is not None:
                raise bad_request(f"server.url {refusal}")

    async def _key(self, org_id: str, record: AnyPhoneNumber) -> str | None:
        """The number's lookup key: a Vonage number's names the account of its credential
        (its `apiKey`, the `api_key` its webhooks' tokens carry)."""
        account = None
        if isinstance(record, VonagePhoneNumber | TelnyxPhoneNumber):
            credential = await self._credentials.find(org_id, record.credential_id)
            if isinstance(credential, VonageCredential):
                account = credential.api_key
            elif isinstance(credential, TelnyxCredential):
                account = credential.account_id
        return lookup_key(record, account)

    async def _write(self, org_id: str, record: AnyPhoneNumber, *, create: bool) -> str | None:
        """Store the number under its lookup key (returned), claimed atomically."""
        doc = self._codec.seal(record.wire(), secret_fields(record.provider))
        key = await self._key(org_id, record)
        try:
            await self._check_number_only_claim(record, key)
            if create:
                await self._store.create(KIND_PHONE_NUMBER, doc, key)
            else:
                await self._store.replace(KIND_PHONE_NUMBER, doc, key)
        except Conflict as exc:
            raise conflict_error(exc, org_id, _describe(record)) from None
        except NotFound:
            raise not_found("Phone number") from None
        return key

    async def _check_number_only_claim(self, record: AnyPhoneNumber, key: str | None) -> None:
        """`Conflict` when a number stored before numbers were keyed by account (it still
        claims the number-only key) is this number under the same account: the store's
        claim on the new key cannot see it. Not atomic with the write; such records move to
        the new key on their next update."""
        older = None if key is None else number_only_key(key)
        if key is None or older is None:
            return
        doc = await self._store.lookup(older)
        if doc is None or doc.get("id") == record.id:
            return
        # Read from the stored document as it is: it may be another org's, whose secrets
        # are not opened (nor its validity checked) to answer this org's request.
        account = await self._stored_account(doc)
        stored = doc.get("number")
        provider = doc.get("provider")
        texts = isinstance(account, str) and isinstance(stored, str) and isinstance(provider, str)
        if texts and account_lookup_key(str(provider), str(account), str(stored)) == key:
            raise Conflict(key, str(doc["id"]), str(doc.get("orgId", "")))

    async def _stored_account(self, doc: Doc) -> object:
        """The provider account of a stored number, read without opening secrets: a Twilio
        number's `twilioAccountSid`; a Vonage number's credential's `apiKey` (an account
        name, not one of the credential's secrets)."""
        provider = doc.get("provider")
        if provider not in ("vonage", "telnyx"):
            return doc.get("twilioAccountSid")
        org_id, credential_id = doc.get("orgId"), doc.get("credentialId")
        if not isinstance(org_id, str) or not isinstance(credential_id, str):
            return None
        credential = await self._store.get(KIND_CREDENTIAL, org_id, credential_id)
        field = "apiKey" if provider == "vonage" else "accountId"
        return None if credential is None else credential.get(field)

    async def _check_credential(self, org_id: str, provider: str, credential_id: Any) -> None:
        wanted = CREDENTIAL_PROVIDER.get(provider)
        if wanted is None or credential_id is None:
            return
        credential = await self._credentials.find(org_id, str(credential_id))
        if credential is None:
            raise bad_request(
                f"credentialId {credential_id} does not name a credential of this org"
            )
        if credential.provider != wanted:
            raise bad_request(
                f"credentialId {credential_id} is a {credential.provider} credential; "
                f"{provider} numbers need a {wanted} credential"
            )

    @staticmethod
    def _audit(record: AnyPhoneNumber, key: str | None) -> dict[str, Any]:
        return {
            "org_id": record.org_id,
            "phone_number_id": record.id,
            "provider": record.provider,
            "lookup_key": key,
        }
