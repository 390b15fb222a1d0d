"""Secrets at rest and on the wire: encrypted when a key is configured, always masked."""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

ENCRYPTED_PREFIX = "enc:v1:"


class SecretKeyError(Exception):
    """A stored secret cannot be decrypted with the configured key."""


def mask(value: str) -> str:
    """`********************abcd`: the length is kept so a response meets the spec's bounds.

    Short secrets show nothing: four of eight characters would be half the secret.
    """
    if len(value) < 12:
        return "*" * len(value)
    return "*" * (len(value) - 4) + value[-4:]


def _fernet_key(secret: str) -> bytes:
    # An operator may give a Fernet key or any passphrase; both become a 32-byte key.
    try:
        raw = base64.urlsafe_b64decode(secret.encode())
        if len(raw) == 32:
            return secret.encode()
    except ValueError:
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


class SecretBox:
    """Encrypts secret fields for storage; a no-op without `ROUTER_SECRET_KEY`."""

    def __init__(self, key: str | None) -> None:
        self._fernet = Fernet(_fernet_key(key)) if key else None

    def encrypt(self, value: str) -> str:
        if self._fernet is None:
            return value
        return ENCRYPTED_PREFIX + self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, value: str) -> str:
        if not value.startswith(ENCRYPTED_PREFIX):
            return value
        if self._fernet is None:
            raise SecretKeyError("a stored secret is encrypted but ROUTER_SECRET_KEY is not set")
        try:
            return self._fernet.decrypt(value[len(ENCRYPTED_PREFIX) :].encode()).decode()
        except InvalidToken:
            raise SecretKeyError(
                "a stored secret does not decrypt with ROUTER_SECRET_KEY"
            ) from None


def map_paths(
    doc: dict[str, Any], paths: Iterable[str], fn: Callable[[str], str]
) -> dict[str, Any]:
    """A copy of `doc` with `fn` applied to the string at each dotted path that exists."""
    out = copy.deepcopy(doc)
    for path in paths:
        *parents, leaf = path.split(".")
        node: Any = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(leaf), str):
            node[leaf] = fn(node[leaf])
    return out


def get_path(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
