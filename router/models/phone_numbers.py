"""Phone numbers of the six providers: create, update and stored/response shapes.

Each provider has one `*Fields` mixin holding its field rules, so the create DTO,
the update DTO (every field optional) and the stored record validate alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    ConfigDict,
    Field,
    StrictInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from router.models.common import (
    Hook,
    PhoneNumberHookCallEnding,
    PhoneNumberHookCallRinging,
    Server,
    SipAuthentication,
    TransferDestination,
)
from router.models.wire import (
    SipUri,
    WireModel,
    check_number,
    for_api,
    normalize_e164,
    saved_e164,
)

Provider = Literal["twilio", "telnyx", "vonage", "plivo", "vapi", "byo-phone-number"]
PROVIDERS: tuple[Provider, ...] = (
    "twilio",
    "telnyx",
    "vonage",
    "plivo",
    "vapi",
    "byo-phone-number",
)
Status = Literal["active", "activating", "blocked"]


class _Routing(WireModel):
    """Fields every provider shares: where inbound calls go."""

    fallback_destination: TransferDestination | None = None
    hooks: list[Hook] | None = None
    name: str | None = Field(default=None, max_length=40)
    assistant_id: str | None = None
    workflow_id: str | None = None
    squad_id: str | None = None
    server: Server | None = None
    # Router extension (not in the seed spec): `blocked` numbers reject their calls.
    status: Literal["active", "blocked"] | None = None
    # Router extensions (SPEC §12, docs/routing.md): how many calls the number takes at
    # once, across every worker, and where the others go (else they hear the apology).
    max_concurrent_calls: StrictInt | None = Field(default=None, ge=1, le=100_000)
    overflow_destination: TransferDestination | None = None

    def ringing_hooks(self) -> list[PhoneNumberHookCallRinging]:
        return [h for h in self.hooks or () if isinstance(h, PhoneNumberHookCallRinging)]

    def ending_hooks(self) -> list[PhoneNumberHookCallEnding]:
        return [h for h in self.hooks or () if isinstance(h, PhoneNumberHookCallEnding)]


class _ProviderNumber(WireModel):
    """A number on a provider that sends E.164 numbers (with or without the +)."""

    @field_validator("number", check_fields=False)
    @classmethod
    def _e164(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        # Saved through the API: as written, and possible. Stored, or a provider's: read.
        return saved_e164(value) if for_api(info) else normalize_e164(value)


class _TwilioFields(_ProviderNumber):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("twilioAuthToken", "twilioApiSecret")

    sms_enabled: bool | None = None
    twilio_auth_token: str | None = Field(default=None, min_length=1, max_length=200)
    twilio_api_key: str | None = Field(default=None, min_length=1, max_length=200)
    twilio_api_secret: str | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _api_key_pair(self) -> Any:
        if (self.twilio_api_key is None) != (self.twilio_api_secret is None):
            raise ValueError("twilioApiKey and twilioApiSecret go together")
        return self


class _CredentialNumber(_ProviderNumber):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ()


class _VapiFields(WireModel):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ("authentication.password",)

    number_desired_area_code: str | None = Field(default=None, min_length=3, max_length=3)
    sip_uri: SipUri | None = None
    authentication: SipAuthentication | None = None


class _ByoFields(WireModel):
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ()
    # False on the PATCH DTO: a number sent without the flag is checked on the merged record,
    # under the flag the record already has, not under this model's default.
    CHECK_NUMBER_WITHOUT_FLAG: ClassVar[bool] = True

    number_e164_check_enabled: bool = True
    number: str | None = Field(default=None, min_length=3, max_length=40)

    @model_validator(mode="after")
    def _number_format(self, info: ValidationInfo) -> Any:
        flag_known = (
            self.CHECK_NUMBER_WITHOUT_FLAG or "number_e164_check_enabled" in self.model_fields_set
        )
        if self.number is not None and flag_known:
            check_number(self.number, self.number_e164_check_enabled, possible=for_api(info))
        return self


# --- create DTOs -----------------------------------------------------------------------------


class CreateTwilioPhoneNumberDTO(_TwilioFields, _Routing):
    provider: Literal["twilio"]
    sms_enabled: bool = True
    number: str
    twilio_account_sid: str = Field(min_length=1, max_length=64)


class CreateTelnyxPhoneNumberDTO(_CredentialNumber, _Routing):
    provider: Literal["telnyx"]
    number: str
    credential_id: str = Field(min_length=1)


class CreateVonagePhoneNumberDTO(_CredentialNumber, _Routing):
    provider: Literal["vonage"]
    number: str
    credential_id: str = Field(min_length=1)


class CreatePlivoPhoneNumberDTO(_CredentialNumber, _Routing):
    """Router extension (SPEC §13): a number on Plivo, verified with its `plivo` credential."""

    provider: Literal["plivo"]
    number: str
    credential_id: str = Field(min_length=1)


class CreateVapiPhoneNumberDTO(_VapiFields, _Routing):
    provider: Literal["vapi"]


class CreateByoPhoneNumberDTO(_ByoFields, _Routing):
    provider: Literal["byo-phone-number"]
    credential_id: str = Field(min_length=1)


CreatePhoneNumber = Annotated[
    CreateByoPhoneNumberDTO
    | CreateTwilioPhoneNumberDTO
    | CreateVonagePhoneNumberDTO
    | CreateVapiPhoneNumberDTO
    | CreateTelnyxPhoneNumberDTO
    | CreatePlivoPhoneNumberDTO,
    Field(discriminator="provider"),
]


class ImportTwilioPhoneNumberDTO(_TwilioFields, _Routing):
    """`POST /phone-number/import/twilio`: the number arrives as `twilioPhoneNumber`."""

    sms_enabled: bool = True
    twilio_phone_number: str
    twilio_account_sid: str = Field(min_length=1, max_length=64)

    @field_validator("twilio_phone_number")
    @classmethod
    def _e164_import(cls, value: str, info: ValidationInfo) -> str:
        return saved_e164(value) if for_api(info) else normalize_e164(value)

    def to_create(self) -> CreateTwilioPhoneNumberDTO:
        data = self.model_dump(by_alias=True, exclude_none=True)
        data["number"] = data.pop("twilioPhoneNumber")
        return CreateTwilioPhoneNumberDTO.model_validate({**data, "provider": "twilio"})


# --- update DTOs: every field optional; `null` clears -------------------------------------


class _Update(WireModel):
    # Clients that echo the discriminator are accepted; it must name the number's provider.
    provider: str | None = None


class UpdateTwilioPhoneNumberDTO(_TwilioFields, _Routing, _Update):
    number: str | None = None
    twilio_account_sid: str | None = Field(default=None, min_length=1, max_length=64)


class UpdateTelnyxPhoneNumberDTO(_CredentialNumber, _Routing, _Update):
    number: str | None = None
    credential_id: str | None = Field(default=None, min_length=1)


class UpdateVonagePhoneNumberDTO(_CredentialNumber, _Routing, _Update):
    number: str | None = None
    credential_id: str | None = Field(default=None, min_length=1)


class UpdatePlivoPhoneNumberDTO(_CredentialNumber, _Routing, _Update):
    number: str | None = None
    credential_id: str | None = Field(default=None, min_length=1)


class UpdateVapiPhoneNumberDTO(_VapiFields, _Routing, _Update):
    pass


class UpdateByoPhoneNumberDTO(_ByoFields, _Routing, _Update):
    CHECK_NUMBER_WITHOUT_FLAG: ClassVar[bool] = False

    number_e164_check_enabled: bool = True
    credential_id: str | None = Field(default=None, min_length=1)


# --- stored records, which are also the response shapes --------------------------------------


class _Record(WireModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    org_id: str
    created_at: datetime
    updated_at: datetime
    status: Status = "active"  # records also know `activating`


class TwilioPhoneNumber(_Record, CreateTwilioPhoneNumberDTO):
    model_config = ConfigDict(extra="ignore")


class TelnyxPhoneNumber(_Record, CreateTelnyxPhoneNumberDTO):
    model_config = ConfigDict(extra="ignore")


class VonagePhoneNumber(_Record, CreateVonagePhoneNumberDTO):
    model_config = ConfigDict(extra="ignore")


class PlivoPhoneNumber(_Record, CreatePlivoPhoneNumberDTO):
    model_config = ConfigDict(extra="ignore")


class VapiPhoneNumber(_Record, CreateVapiPhoneNumberDTO):
    model_config = ConfigDict(extra="ignore")

    number: str | None = None


class ByoPhoneNumber(_Record, CreateByoPhoneNumberDTO):
    model_config = ConfigDict(extra="ignore")


PhoneNumber = Annotated[
    ByoPhoneNumber
    | TwilioPhoneNumber
    | VonagePhoneNumber
    | VapiPhoneNumber
    | TelnyxPhoneNumber
    | PlivoPhoneNumber,
    Field(discriminator="provider"),
]
AnyPhoneNumber = (
    ByoPhoneNumber
    | TwilioPhoneNumber
    | VonagePhoneNumber
    | VapiPhoneNumber
    | TelnyxPhoneNumber
    | PlivoPhoneNumber
)

RECORD_MODELS: dict[str, type[AnyPhoneNumber]] = {
    "twilio": TwilioPhoneNumber,
    "telnyx": TelnyxPhoneNumber,
    "vonage": VonagePhoneNumber,
    "plivo": PlivoPhoneNumber,
    "vapi": VapiPhoneNumber,
    "byo-phone-number": ByoPhoneNumber,
}
UPDATE_MODELS: dict[str, type[WireModel]] = {
    "twilio": UpdateTwilioPhoneNumberDTO,
    "telnyx": UpdateTelnyxPhoneNumberDTO,
    "vonage": UpdateVonagePhoneNumberDTO,
    "plivo": UpdatePlivoPhoneNumberDTO,
    "vapi": UpdateVapiPhoneNumberDTO,
    "byo-phone-number": UpdateByoPhoneNumberDTO,
}
# Fields a PATCH may not clear with `null`: the spec requires them on the record.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "twilio": ("number", "twilioAccountSid"),
    "telnyx": ("number", "credentialId"),
    "vonage": ("number", "credentialId"),
    "plivo": ("number", "credentialId"),
    "vapi": (),
    "byo-phone-number": ("credentialId",),
}


def sip_lookup_key(uri: str) -> str:
    """`sip:user@host` lower-cased, without scheme variant, parameters or headers."""
    rest = (
        uri.strip().lower().split(":", 1)[-1] if uri.lower().startswith(("sip:", "sips:")) else uri
    )
    for cut in (";", "?", ">"):
        rest = rest.split(cut, 1)[0]
    return f"sip:{rest.strip().lower()}"


def lookup_key(number: AnyPhoneNumber, account: str | None = None) -> str | None:
    """The key inbound calls find this number by; unique across the deployment.

    A Twilio or Vonage number is keyed by its provider account as well
    (`twilio:AC...:+E164`, `vonage:<api key>:+E164`): the webhook names the account, signed
    (Twilio's `AccountSid`, the `api_key` claim of Vonage's token), and a number belongs to
    one account at the provider, so a registration under another account can neither block
    nor intercept the owner's. A Twilio number names its account; a Vonage number's is the
    `apiKey` of its credential, a Telnyx number's its credential's `accountId` (TeXML's
    `AccountSid`), which the caller reads and passes as `account` (without it, the
    number-only key, as numbers stored before were keyed). A Plivo number is keyed by
    number only (`plivo:+E164`): Plivo's webhooks name no account.
    """
    if isinstance(number, VapiPhoneNumber):
        return sip_lookup_key(number.sip_uri) if number.sip_uri else None
    if isinstance(number, ByoPhoneNumber):
        return f"byo:{number.credential_id}:{number.number}" if number.number else None
    if isinstance(number, TwilioPhoneNumber):
        return account_lookup_key("twilio", number.twilio_account_sid, number.number)
    if isinstance(number, VonagePhoneNumber | TelnyxPhoneNumber) and account:
        return account_lookup_key(number.provider, account, number.number)
    return f"{number.provider}:{number.number}"


def account_lookup_key(provider: str, account: str, number: str) -> str:
    """The key of a number held under a provider account: `provider:account:+E164`."""
    return f"{provider}:{account}:{number}"


# Providers whose numbers are keyed by account: their webhooks name it, signed (a Telnyx
# number only when its credential names the account: `accountId`).
ACCOUNT_SCOPED_PROVIDERS: frozenset[str] = frozenset({"twilio", "vonage", "telnyx"})


def number_only_key(key: str) -> str | None:
    """The number-only key (`twilio:+E164`) an account-scoped key had before numbers were
    keyed by account; what numbers stored by older versions still claim. None for keys
    that were never account-scoped."""
    provider, _, rest = key.partition(":")
    if provider not in ACCOUNT_SCOPED_PROVIDERS or ":" not in rest:
        return None
    return f"{provider}:{rest.rpartition(':')[2]}"  # an E.164 number holds no `:`


def secret_fields(provider: str) -> tuple[str, ...]:
    """Dotted wire paths of the secrets a number of this provider may hold."""
    model = RECORD_MODELS[provider]
    return tuple(getattr(model, "SECRET_FIELDS", ()))
