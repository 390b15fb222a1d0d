"""Secrets at rest and on the wire: encrypted when a key is configured, always masked."""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Callable, Iterable, Iterator
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


def _steps(path: str) -> list[tuple[str, str | None]]:
    """`a.b[id].c` as `[("a", None), ("b", "id"), ("c", None)]`: a step with an id goes
    into every element of that list."""
    steps: list[tuple[str, str | None]] = []
    for part in path.split("."):
        name, bracket, rest = part.partition("[")
        steps.append((name, rest.removesuffix("]") if bracket else None))
    return steps


def map_paths(
    doc: dict[str, Any], paths: Iterable[str], fn: Callable[[str], str]
) -> dict[str, Any]:
    """A copy of `doc` with `fn` applied to the string at each path that exists.

    A path is dotted (`outboundAuthenticationPlan.authPassword`); `name[id]` steps into
    every element of the list `name`, `id` naming the field that tells its elements
    apart (`sharedKeys[sid].secret`: the secret of each shared key).
    """
    out = copy.deepcopy(doc)
    for path in paths:
        for node, leaf, _ in _leaves(out, _steps(path), ""):
            node[leaf] = fn(node[leaf])
    return out


def path_values(doc: dict[str, Any], path: str) -> list[tuple[str, str]]:
    """Each string at `path` (as `map_paths` reads it) with where it is, list elements
    by index as validation messages name them (`sharedKeys[1].secret`)."""
    return [(where, node[leaf]) for node, leaf, where in _leaves(doc, _steps(path), "")]


def _leaves(
    node: Any, steps: list[tuple[str, str | None]], where: str
) -> Iterator[tuple[dict[str, Any], str, str]]:
    """The (parent, name, location) of each string `steps` lead to from `node`."""
    if not isinstance(node, dict):
        return
    (name, each), rest = steps[0], steps[1:]
    here = f"{where}.{name}" if where else name
    if not rest:
        if each is None and isinstance(node.get(name), str):
            yield node, name, here
    elif each is None:
        yield from _leaves(node.get(name), rest, here)
    elif isinstance(node.get(name), list):
        for index, item in enumerate(node[name]):
            yield from _leaves(item, rest, f"{here}[{index}]")


def keep_masked(current: dict[str, Any], merged: dict[str, Any], paths: Iterable[str]) -> None:
    """Put back, in `merged`, each secret sent exactly as `mask` shows the one stored in
    `current` (a client echoing a GET). List elements are paired by their id field (a
    shared key's echoed secret is the stored secret of the key with the same `sid`)."""
    for path in paths:
        _keep_masked(current, merged, _steps(path))


def _keep_masked(old: Any, new: Any, steps: list[tuple[str, str | None]]) -> None:
    if not isinstance(old, dict) or not isinstance(new, dict):
        return
    (name, each), rest = steps[0], steps[1:]
    if not rest:
        was, sent = old.get(name), new.get(name)
        if isinstance(was, str) and isinstance(sent, str) and sent != was and sent == mask(was):
            new[name] = was
    elif each is None:
        _keep_masked(old.get(name), new.get(name), rest)
    elif isinstance(old.get(name), list) and isinstance(new.get(name), list):
        by_id = {
            item[each]: item
            for item in old[name]
            if isinstance(item, dict) and isinstance(item.get(each), str)
        }
        for item in new[name]:
            if isinstance(item, dict) and isinstance(item.get(each), str):
                _keep_masked(by_id.get(item[each]), item, rest)


def get_path(doc: dict[str, Any], path: str) -> Any:
    """The value at a dotted path (no list steps), or None."""
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node
