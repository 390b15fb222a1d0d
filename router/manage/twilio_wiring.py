"""Provider wiring: point a Twilio number's webhooks at this router when it is saved.

Off unless `ROUTER_WIRE_PROVIDER_NUMBERS` is set; then `ROUTER_PUBLIC_URL` is required,
since that is what Twilio is told to call. Creating or importing a Twilio number, and
a PATCH that changes its number, account, credentials or `smsEnabled`, sets on the
IncomingPhoneNumber (through twilio-python): `VoiceUrl` `{public}/twilio/voice`,
`VoiceFallbackUrl` `{public}/twilio/fallback`, `StatusCallback` `{public}/twilio/status`,
all POST, and `SmsUrl` `{public}/twilio/sms` unless `smsEnabled` is false (then the
messaging URL is left as it is, as Vapi does).

Ordering, so a number is never left half-done:
1. the record is stored first: that validates it and claims the number, so two
   concurrent creates cannot both wire it;
2. Twilio is then asked for the number in the account (a read) and updated with one
   POST, the only write on Twilio's side, so Twilio is either updated or not;
3. if that fails, the store write is undone (a created record deleted, an updated one
   put back as it was) and the API answers: 400 with Twilio's own message when Twilio
   refused (bad credentials, number not in that account), 502 when Twilio answered
   with a server error or something unreadable, 503 when Twilio could not be reached
   or did not answer in time.

After a timeout Twilio may still have applied the POST; the URLs are the same for every
number of this router, so that leaves Twilio pointing here for a number the router does
not know (its calls are rejected unanswered) until the client retries.

The library is synchronous (requests), so each exchange runs in a worker thread with a
deadline; it runs only on API writes, never on the webhook path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from requests.exceptions import Timeout as RequestsTimeout
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from router.errors import ApiError
from router.manage.credential_service import Credentials
from router.models.credentials import TwilioCredential
from router.models.phone_numbers import AnyPhoneNumber, TwilioPhoneNumber
from router.settings import Settings
from router.store.interface import ListQuery, StoreError

log = structlog.get_logger("router.audit")

VOICE_PATH = "/twilio/voice"
FALLBACK_PATH = "/twilio/fallback"
STATUS_PATH = "/twilio/status"
SMS_PATH = "/twilio/sms"
# Fields whose change on PATCH re-wires a Twilio number (what Twilio is told, or how).
REWIRE_FIELDS = (
    "number",
    "twilioAccountSid",
    "twilioAuthToken",
    "twilioApiKey",
    "twilioApiSecret",
    "smsEnabled",
)
# How many numbers Twilio's `PhoneNumber` filter (a partial match) may return.
_MATCHES_PAGE_SIZE = 20
# `Client` reads TWILIO_* from os.environ when given an empty mapping; this non-empty
# one keeps the process environment out (settings are read once, at the edge).
_NO_ENVIRONMENT = {"ROUTER_WIRING": "1"}

Undo = Callable[[], Awaitable[object]]


class WiringFailed(ApiError):
    """Twilio was not updated; carries what the audit log says about why."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        reason: str,
        twilio_status: int | None = None,
        twilio_code: int | None = None,
    ) -> None:
        super().__init__(status, [message] if status == 400 else message)
        self.reason = reason
        self.twilio_status = twilio_status
        self.twilio_code = twilio_code

    def with_note(self, note: str) -> WiringFailed:
        """The same failure, its message extended (e.g. by what the rollback did)."""
        text = self.message[0] if isinstance(self.message, list) else self.message
        return WiringFailed(
            self.status,
            f"{text}; {note}",
            reason=self.reason,
            twilio_status=self.twilio_status,
            twilio_code=self.twilio_code,
        )


class BaseUrlHttpClient(TwilioHttpClient):  # type: ignore[misc]  # twilio ships no types
    """twilio-python's HTTP client, sending requests addressed to `*.twilio.com` to a base URL.

    The supported hook: `Client(http_client=...)`. Every request of the library (including
    next-page links) passes through `request`, so only the scheme and host change; the
    path and query are Twilio's. Without a base URL it is the stock client.
    """

    def __init__(self, base_url: str | None, timeout_seconds: float) -> None:
        super().__init__(timeout=timeout_seconds)
        self._base = urlsplit(base_url.rstrip("/")) if base_url else None

    def rewrite(self, url: str) -> str:
        """The URL to call instead of `url`."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if self._base is None or not (host == "twilio.com" or host.endswith(".twilio.com")):
            return url
        return parts._replace(
            scheme=self._base.scheme,
            netloc=self._base.netloc,
            path=self._base.path + parts.path,
        ).geturl()

    def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Any:
        return super().request(
            method,
            self.rewrite(url),
            params=params,
            data=data,
            headers=headers,
            auth=auth,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )

    # The library logs every request and response at INFO through the standard library;
    # the audit events (`phone_number.wired` / `.wiring_failed`) say what ops need.
    def log_request(self, kwargs: dict[str, Any]) -> None:
        pass

    def log_response(self, status_code: int, response: Any) -> None:
        pass

    def close(self) -> None:
        if self.session is not None:
            self.session.close()


@dataclass(frozen=True, slots=True)
class _Auth:
    """How to authenticate to the number's account: `Client(username, password, account)`."""

    username: str
    password: str
    account_sid: str
    source: str  # auth-token | api-key | credential, for the audit log


class TwilioWiring:
    """Sets a Twilio number's voice, fallback, status (and SMS) URLs to this router."""

    def __init__(
        self,
        *,
        public_url: str,
        credentials: Credentials,
        api_base_url: str | None = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        self._public_url = public_url.rstrip("/")
        self._credentials = credentials
        self._timeout_seconds = timeout_seconds
        self._api_base_url = api_base_url
        self._http = BaseUrlHttpClient(api_base_url, timeout_seconds)

    @classmethod
    def from_settings(cls, settings: Settings, credentials: Credentials) -> TwilioWiring | None:
        """The wiring the settings ask for: None when off; `ValueError` when on but unusable."""
        if not settings.wire_provider_numbers:
            return None
        if not settings.public_url:
            raise ValueError(
                "ROUTER_WIRE_PROVIDER_NUMBERS needs ROUTER_PUBLIC_URL: it is the base of "
                "the URLs Twilio numbers are pointed at (e.g. https://router.example.com)"
            )
        if urlsplit(settings.public_url).scheme not in ("http", "https"):
            raise ValueError("ROUTER_PUBLIC_URL must be an http(s) URL to wire Twilio numbers")
        return cls(
            public_url=settings.public_url,
            credentials=credentials,
            api_base_url=settings.twilio_api_base_url,
            timeout_seconds=settings.twilio_api_timeout_seconds,
        )

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """`cleanup_ctx`: log what is wired where; close the HTTP session at shutdown."""
        log.info(
            "wiring.enabled",
            public_url=self._public_url,
            twilio_api_base_url=self._api_base_url or "https://api.twilio.com",
        )
        yield
        self._http.close()

    def urls(self, *, sms: bool) -> dict[str, str]:
        """The IncomingPhoneNumber fields set (twilio-python's names)."""
        fields = {
            "voice_url": self._public_url + VOICE_PATH,
            "voice_method": "POST",
            "voice_fallback_url": self._public_url + FALLBACK_PATH,
            "voice_fallback_method": "POST",
            "status_callback": self._public_url + STATUS_PATH,
            "status_callback_method": "POST",
        }
        if sms:
            fields |= {"sms_url": self._public_url + SMS_PATH, "sms_method": "POST"}
        return fields

    # --- the hooks the phone-number service calls ------------------------------------------

    async def wire(self, number: AnyPhoneNumber, *, undo: Undo) -> None:
        """Wire a just-stored number; on failure run `undo` (delete it) and raise."""
        if isinstance(number, TwilioPhoneNumber):
            await self._wire_or_undo(number, undo=undo, action="create")

    async def rewire(self, before: AnyPhoneNumber, after: AnyPhoneNumber, *, undo: Undo) -> None:
        """Re-wire an updated number when a wiring field changed; on failure `undo` and raise."""
        if not isinstance(after, TwilioPhoneNumber):
            return
        old, new = before.wire(), after.wire()
        if any(old.get(name) != new.get(name) for name in REWIRE_FIELDS):
            await self._wire_or_undo(after, undo=undo, action="update")

    # --- internals ----------------------------------------------------------------------------

    async def _wire_or_undo(self, number: TwilioPhoneNumber, *, undo: Undo, action: str) -> None:
        audit = {
            "org_id": number.org_id,
            "phone_number_id": number.id,
            "provider": number.provider,
            "number": number.number,
            "account_sid": number.twilio_account_sid,
            "action": action,
        }
        sms = number.sms_enabled is not False
        try:
            auth = await self._auth(number)
            number_sid = await self._run(auth, number.number, sms)
        except WiringFailed as failure:
            rolled_back = await self._undo(undo, audit)
            log.warning(
                "phone_number.wiring_failed",
                **audit,
                status=failure.status,
                reason=failure.reason,
                twilio_status=failure.twilio_status,
                twilio_code=failure.twilio_code,
                rolled_back=rolled_back,
            )
            what = "number was not saved" if action == "create" else "change was not saved"
            raise failure.with_note(
                f"the {what}" if rolled_back else f"the {what}, but undoing it failed"
            ) from None
        except Exception:
            # A fault of ours (or the store going away): still leave no half-done number.
            await self._undo(undo, audit)
            log.exception("phone_number.wiring_failed", **audit, reason="internal-error")
            raise
        log.info("phone_number.wired", **audit, auth=auth.source, twilio_sid=number_sid, sms=sms)

    async def _undo(self, undo: Undo, audit: dict[str, Any]) -> bool:
        try:
            await undo()
        except (ApiError, StoreError) as exc:
            log.error("phone_number.rollback_failed", **audit, detail=str(exc))
            return False
        return True

    async def _auth(self, number: TwilioPhoneNumber) -> _Auth:
        """The number's auth token, else its API key/secret, else an org `twilio` credential."""
        account = number.twilio_account_sid
        if number.twilio_auth_token:
            return _Auth(account, number.twilio_auth_token, account, "auth-token")
        if number.twilio_api_key and number.twilio_api_secret:
            return _Auth(number.twilio_api_key, number.twilio_api_secret, account, "api-key")
        # The newest credential of that account wins (listings are newest first).
        credentials, _ = await self._credentials.list(number.org_id, ListQuery(limit=1000))
        for credential in credentials:
            if isinstance(credential, TwilioCredential) and credential.account_sid == account:
                return _Auth(account, credential.auth_token, account, "credential")
        raise WiringFailed(
            400,
            f"cannot configure {number.number} on Twilio: give twilioAuthToken, or "
            f"twilioApiKey and twilioApiSecret, or create a twilio credential for account "
            f"{account}",
            reason="no-credentials",
        )

    async def _run(self, auth: _Auth, phone_number: str, sms: bool) -> str:
        """`_apply` in a worker thread, bounded by the timeout; Twilio's faults as WiringFailed."""
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self._apply, auth, phone_number, sms), self._timeout_seconds
            )
        except WiringFailed:
            raise
        except (TimeoutError, RequestsTimeout):
            # Two clocks of the same length: ours, or requests' own in the thread (which
            # otherwise runs on until requests' ends it), whichever ran out first.
            raise _unreachable(
                phone_number, f"no answer within {self._timeout_seconds:g}s"
            ) from None
        except TwilioRestException as exc:
            raise _refused(
                phone_number, auth, exc.status, _twilio_message(exc.msg), _code(exc.code)
            ) from None
        except TwilioException as exc:
            # A failed listing raises TwilioException("Unable to fetch page", response).
            response = exc.args[1] if len(exc.args) > 1 else None
            status = getattr(response, "status_code", None)
            if isinstance(status, int):
                message, code = _error_body(getattr(response, "text", ""))
                raise _refused(phone_number, auth, status, message, code) from None
            raise _unreadable(phone_number, str(exc)) from None
        except OSError as exc:
            # requests' ConnectionError and Timeout are OSErrors; their text names only
            # the URL, but the class name says enough.
            raise _unreachable(phone_number, type(exc).__name__) from None
        except ValueError as exc:  # a body that is not the JSON Twilio sends
            raise _unreadable(phone_number, type(exc).__name__) from None

    def _apply(self, auth: _Auth, phone_number: str, sms: bool) -> str:
        """Find the number in the account and set its URLs (blocking); its PN sid."""
        client = Client(
            auth.username,
            auth.password,
            auth.account_sid,
            http_client=self._http,
            environment=_NO_ENVIRONMENT,
        )
        numbers = client.api.v2010.accounts(auth.account_sid).incoming_phone_numbers
        # The filter matches partially; only the exact number counts.
        matches = [
            found
            for found in numbers.list(phone_number=phone_number, limit=_MATCHES_PAGE_SIZE)
            if found.phone_number == phone_number
        ]
        if not matches:
            raise WiringFailed(
                400,
                f"Twilio account {auth.account_sid} has no phone number {phone_number}",
                reason="number-not-in-account",
            )
        sid = str(matches[0].sid)
        numbers(sid).update(**self.urls(sms=sms))
        return sid


def _code(value: object) -> int | None:
    return value if isinstance(value, int) else None


def _error_body(text: str) -> tuple[str, int | None]:
    """Twilio's `message` and `code` from an error body (JSON), or the body's start."""
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:200], None
    if not isinstance(body, dict):
        return text.strip()[:200], None
    message = body.get("message") or body.get("detail") or body.get("title") or ""
    return str(message)[:500], _code(body.get("code"))


def _twilio_message(msg: str) -> str:
    # twilio-python prefixes Twilio's message with its own ("Unable to update record: ...").
    return msg.split(": ", 1)[1] if ": " in msg else msg


def _refused(
    phone_number: str, auth: _Auth, status: int, message: str, code: int | None
) -> WiringFailed:
    """Twilio answered with an error: the client's to fix (4xx) or Twilio's (5xx)."""
    # Never echo a secret, even if an error body quoted one back.
    message = message.replace(auth.password, "[redacted]") or f"HTTP {status}"
    suffix = f" (Twilio error {code})" if code is not None and code != status else ""
    if status >= 500:
        return WiringFailed(
            502,
            f"Twilio answered {status} while configuring {phone_number}: {message}{suffix}",
            reason="twilio-error",
            twilio_status=status,
            twilio_code=code,
        )
    if status == 401:
        text = f"Twilio rejected the credentials for account {auth.account_sid}"
    elif status == 404:
        text = f"Twilio account {auth.account_sid} has no phone number {phone_number}"
    else:
        text = f"Twilio refused to configure {phone_number}"
    return WiringFailed(
        400,
        f"{text}: {message}{suffix}",
        reason="twilio-refused",
        twilio_status=status,
        twilio_code=code,
    )


def _unreachable(phone_number: str, detail: str) -> WiringFailed:
    return WiringFailed(
        503,
        f"Twilio could not be reached to configure {phone_number} ({detail}); retry later",
        reason="twilio-unreachable",
    )


def _unreadable(phone_number: str, detail: str) -> WiringFailed:
    return WiringFailed(
        502,
        f"Twilio's answer could not be read while configuring {phone_number} ({detail})",
        reason="twilio-unreadable",
    )
