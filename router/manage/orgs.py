"""Orgs and their API keys: who a bearer key authenticates as."""

from __future__ import annotations

import hashlib
import hmac

from router.models.common import Server
from router.settings import OrgConfig


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Orgs:
    """Looks up orgs by API key; keys are held only as SHA-256 digests."""

    def __init__(self, orgs: list[OrgConfig]) -> None:
        self._by_id = {org.id: org for org in orgs}
        self._by_digest: dict[bytes, OrgConfig] = {}
        for org in orgs:
            for key in org.api_keys:
                self._by_digest[_digest(key.get_secret_value())] = org

    def authenticate(self, key: str) -> OrgConfig | None:
        """The org of this bearer key, or None."""
        digest = _digest(key)
        org = self._by_digest.get(digest)
        # The dict lookup is on a digest, so timing reveals nothing of the key; compare anyway.
        if org is not None and any(
            hmac.compare_digest(digest, _digest(k.get_secret_value())) for k in org.api_keys
        ):
            return org
        return None

    def get(self, org_id: str) -> OrgConfig | None:
        return self._by_id.get(org_id)

    def server(self, org_id: str) -> Server | None:
        """The org-level default `server` for assistant-request, if any."""
        org = self._by_id.get(org_id)
        return org.server if org is not None else None

    def server_secret(self, org_id: str) -> str | None:
        org = self._by_id.get(org_id)
        if org is None or org.server_secret is None:
            return None
        return org.server_secret.get_secret_value()

    @property
    def has_keys(self) -> bool:
        return bool(self._by_digest)
