"""Provider credentials: what the worker needs to verify webhooks and reach providers."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator

from router.models.wire import WireModel

CredentialProvider = Literal["telnyx", "vonage", "twilio", "plivo", "byo-sip-trunk"]


class _Named(WireModel):
    name: str | None = Field(default=None, max_length=40)


# Every secret field is `repr=False`: a credential in a traceback, a log line or a debugger
# shows its ids, never its tokens (`SECRET_FIELDS` names them for the API's masking).


class _TelnyxFields(_Named):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("apiKey",)

    api_key: str = Field(min_length=1, max_length=400, repr=False)
    # The account's base64 Ed25519 webhook public key (32 bytes).
    public_key: str = Field(min_length=1, max_length=200)
    # Router extension: the Telnyx account id (TeXML's `AccountSid`). With it, the
    # credential's numbers are keyed by account (`telnyx:<accountId>:+E164`) and calls
    # must name it (docs/routing.md#finding-the-number).
    account_id: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$"
    )

    @field_validator("public_key")
    @classmethod
    def _ed25519_key(cls, value: str) -> str:
        import base64
        import binascii

        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("publicKey must be the base64 Ed25519 key from Telnyx") from None
        if len(raw) != 32:
            raise ValueError("publicKey must decode to a 32-byte Ed25519 key")
        return value


class _VonageFields(_Named):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("apiSecret", "signatureSecret")

    api_key: str = Field(min_length=1, max_length=200)
    api_secret: str = Field(min_length=1, max_length=400, repr=False)
    signature_secret: str = Field(min_length=1, max_length=400, repr=False)


class TwilioSharedKey(WireModel):
    """A SharedKey of Twilio's Webhooks configuration API: webhooks announcing
    `key=<sid>` in `X-Twilio-Webhooks-Signature-Settings` are signed with its secret."""

    # The header lists `name=value` pairs split on commas: a sid holding a comma or
    # blank could never be announced.
    sid: str = Field(min_length=1, max_length=64, pattern=r"^[^,\s]+$")
    secret: str = Field(min_length=1, max_length=400, repr=False)


class _TwilioFields(_Named):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("authToken", "sharedKeys[sid].secret")

    account_sid: str = Field(min_length=1, max_length=64)
    auth_token: str = Field(min_length=1, max_length=200, repr=False)
    # Router extension (SPEC §13): several at once, so a key can be rotated.
    shared_keys: list[TwilioSharedKey] | None = Field(default=None, max_length=10)

    @field_validator("shared_keys")
    @classmethod
    def _unique_sids(cls, value: list[TwilioSharedKey] | None) -> list[TwilioSharedKey] | None:
        sids = [key.sid for key in value or ()]
        if len(set(sids)) != len(sids):
            raise ValueError("sharedKeys must not name a sid twice")
        return value

    def shared_key_secrets(self, sid: str) -> list[str]:
        """The secrets of this credential's shared keys named `sid` (one, or none)."""
        return [key.secret for key in self.shared_keys or () if key.sid == sid]


class _PlivoFields(_Named):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("authToken",)

    # The (sub)account's Auth ID and Auth Token: the token keys X-Plivo-Signature-V3.
    auth_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")
    auth_token: str = Field(min_length=1, max_length=200, repr=False)


class SipTrunkGateway(WireModel):
    ip: str = Field(min_length=1, max_length=255)
    port: int | None = Field(default=None, ge=1, le=65535)
    netmask: int | None = Field(default=None, ge=24, le=32)
    inbound_enabled: bool = True
    outbound_enabled: bool = True
    outbound_protocol: Literal["udp", "tcp", "tls", "tls/srtp"] = "udp"


class SipTrunkOutboundAuthenticationPlan(WireModel):
    auth_username: str | None = Field(default=None, max_length=200)
    auth_password: str | None = Field(default=None, max_length=200, repr=False)


class _SipTrunkFields(_Named):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("outboundAuthenticationPlan.authPassword",)

    gateways: list[SipTrunkGateway] = Field(min_length=1, max_length=20)
    outbound_authentication_plan: SipTrunkOutboundAuthenticationPlan | None = None
    outbound_leading_plus_enabled: bool | None = None


class CreateTelnyxCredentialDTO(_TelnyxFields):
    provider: Literal["telnyx"]


class CreateVonageCredentialDTO(_VonageFields):
    provider: Literal["vonage"]


class CreateTwilioCredentialDTO(_TwilioFields):
    provider: Literal["twilio"]


class CreatePlivoCredentialDTO(_PlivoFields):
    """Router extension (SPEC §13)."""

    provider: Literal["plivo"]


class CreateSipTrunkCredentialDTO(_SipTrunkFields):
    provider: Literal["byo-sip-trunk"]


CreateCredential = Annotated[
    CreateTelnyxCredentialDTO
    | CreateVonageCredentialDTO
    | CreateTwilioCredentialDTO
    | CreatePlivoCredentialDTO
    | CreateSipTrunkCredentialDTO,
    Field(discriminator="provider"),
]


class _CredentialRecord(WireModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    org_id: str
    created_at: datetime
    updated_at: datetime


class TelnyxCredential(_CredentialRecord, CreateTelnyxCredentialDTO):
    model_config = ConfigDict(extra="ignore")


class VonageCredential(_CredentialRecord, CreateVonageCredentialDTO):
    model_config = ConfigDict(extra="ignore")


class TwilioCredential(_CredentialRecord, CreateTwilioCredentialDTO):
    model_config = ConfigDict(extra="ignore")


class PlivoCredential(_CredentialRecord, CreatePlivoCredentialDTO):
    model_config = ConfigDict(extra="ignore")


class SipTrunkCredential(_CredentialRecord, CreateSipTrunkCredentialDTO):
    model_config = ConfigDict(extra="ignore")


AnyCredential = (
    TelnyxCredential | VonageCredential | TwilioCredential | PlivoCredential | SipTrunkCredential
)

CREDENTIAL_MODELS: dict[str, type[AnyCredential]] = {
    "telnyx": TelnyxCredential,
    "vonage": VonageCredential,
    "twilio": TwilioCredential,
    "plivo": PlivoCredential,
    "byo-sip-trunk": SipTrunkCredential,
}
CREATE_CREDENTIAL_MODELS: dict[str, type[WireModel]] = {
    "telnyx": CreateTelnyxCredentialDTO,
    "vonage": CreateVonageCredentialDTO,
    "twilio": CreateTwilioCredentialDTO,
    "plivo": CreatePlivoCredentialDTO,
    "byo-sip-trunk": CreateSipTrunkCredentialDTO,
}


def credential_secret_fields(provider: str) -> tuple[str, ...]:
    """Dotted wire paths of the secrets a credential of this provider holds."""
    return tuple(getattr(CREDENTIAL_MODELS[provider], "SECRET_FIELDS", ()))


def credential_patch_model(provider: str) -> type[WireModel]:
    """The create DTO of a provider, with every field optional, for PATCH bodies."""
    return _PATCH_MODELS[provider]


def _optional_copy(model: type[WireModel]) -> type[WireModel]:
    from pydantic import create_model

    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        optional = info.annotation | None  # type: ignore[operator]  # annotations are types here
        fields[name] = (optional, Field(default=None, alias=info.alias, repr=info.repr))
    return create_model(
        f"Update{model.__name__.removeprefix('Create')}", __base__=WireModel, **fields
    )


_PATCH_MODELS = {name: _optional_copy(model) for name, model in CREATE_CREDENTIAL_MODELS.items()}
