"""`router numbers export|import`: number configurations in and out of a running router.

Both commands talk to the REST API (so they work on either store, with the server up),
one HTTP session per command. The rules (docs/numbers-transfer.md):

- A number is identified by its lookup key (provider+number, the SIP URI case-insensitive,
  byo credentialId+number), never by its id: ids differ between deployments.
- Export writes the API's create shape, sorted by lookup key, without server fields
  (`id`, `orgId`, `createdAt`, `updatedAt`, `status` unless `blocked`). The API returns
  secrets masked, so they cannot be exported: each secret becomes a `${VARIABLE}`
  placeholder that import reads from the environment.
- Import makes each number of the file exactly what the file says: absent → created,
  different → PATCHed with only the changed top-level fields (a field the file no longer
  has is cleared with `null`), equal → untouched. Secrets are the exception: a secret the
  file leaves out, or whose placeholder is unset, keeps its stored value. Numbers the file
  does not name are never touched (import does not delete).
- A secret counts as unchanged when its masked form (length and last four characters)
  matches the stored one: the API never returns more.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TextIO

import aiohttp
import yaml
from pydantic import ValidationError

from router.errors import validation_messages
from router.manage.number_service import CREATE_MODELS
from router.manage.secrecy import get_path, map_paths, mask
from router.models.phone_numbers import (
    PROVIDERS,
    account_lookup_key,
    number_only_key,
    secret_fields,
    sip_lookup_key,
)

DEFAULT_URL: Final = "http://127.0.0.1:8080"
# The list endpoints cap `limit` at 1000.
PAGE_SIZE: Final = 1000
WRITE_CONCURRENCY: Final = 8
REQUEST_TIMEOUT_SECONDS: Final = 30.0
# Fields the server sets: left out of exports, ignored in imports (so a raw
# `GET /phone-number` dump, from router or from Vapi, imports as is).
SERVER_FIELDS: Final = ("id", "orgId", "createdAt", "updatedAt")
LEADING_FIELDS: Final = (
    "provider",
    "number",
    "sipUri",
    "credentialId",
    "twilioAccountSid",
    "name",
    "status",
)
SHOWN_SECRET: Final = "********"  # noqa: S105  # how the diff shows one, not a secret
PLACEHOLDER = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
# Stands in for a secret that is not supplied while the file is validated; never sent.
_DUMMY_SECRET: Final = "0" * 24
_ABSENT: Final = object()

Format = Literal["yaml", "json"]


class TransferError(Exception):
    """A problem that stops the command before anything is written; `code` is the exit code."""

    def __init__(self, problems: list[str], code: int = 2) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.code = code


class ApiFailure(Exception):
    """A non-2xx answer of the router's API, with its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message


# --- the REST client --------------------------------------------------------------------------


class Client:
    """The Phone Numbers API of one router, over one aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"}

    async def _call(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None
    ) -> Any:
        async with self._session.request(
            method, self._base + path, params=params, json=body, headers=self._headers
        ) as response:
            text = await response.text()
            if response.status >= 300:
                raise ApiFailure(response.status, _error_message(text))
            return json.loads(text)

    async def numbers(self) -> list[dict[str, Any]]:
        """Every number of the org: pages of `/v2/phone-number`, oldest first.

        Keyed on `createdAtGe` of the last one seen (robust to writes meanwhile); `page`
        only moves on when a whole page shares one createdAt.
        """
        seen: dict[str, dict[str, Any]] = {}
        since: str | None = None
        page = 1
        while True:
            params = {"limit": str(PAGE_SIZE), "sortOrder": "ASC", "page": str(page)}
            if since is not None:
                params["createdAtGe"] = since
            body = await self._call("GET", "/v2/phone-number", params=params)
            results: list[dict[str, Any]] = body["results"]
            for number in results:
                seen.setdefault(number["id"], number)
            if len(results) < PAGE_SIZE:
                return list(seen.values())
            last = results[-1]["createdAt"]
            since, page = (since, page + 1) if last == since else (last, 1)

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        created: dict[str, Any] = await self._call("POST", "/phone-number", body=body)
        return created

    async def update(self, number_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        updated: dict[str, Any] = await self._call(
            "PATCH", f"/phone-number/{number_id}", body=patch
        )
        return updated


def _error_message(text: str) -> str:
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:500] or "no body"
    message = body.get("message", body) if isinstance(body, dict) else body
    return "; ".join(map(str, message)) if isinstance(message, list) else str(message)


def session(timeout_seconds: float = REQUEST_TIMEOUT_SECONDS) -> aiohttp.ClientSession:
    """The command's one HTTP session."""
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_seconds))


# --- shapes and keys --------------------------------------------------------------------------


def key_of(number: Mapping[str, Any]) -> str | None:
    """The lookup key of a number in wire form (as `router.models.phone_numbers.lookup_key`;
    a Vonage number's without its credential's account: one org holds a number once)."""
    provider = number.get("provider")
    if provider == "vapi":
        sip_uri = number.get("sipUri")
        return sip_lookup_key(sip_uri) if isinstance(sip_uri, str) else None
    if provider == "byo-phone-number":
        value = number.get("number")
        return f"byo:{number.get('credentialId')}:{value}" if value else None
    if provider == "twilio":
        return account_lookup_key(
            provider, str(number.get("twilioAccountSid")), str(number.get("number"))
        )
    return f"{provider}:{number.get('number')}"


def create_shape(number: Mapping[str, Any]) -> dict[str, Any]:
    """A listed number as the API's create body: no server fields, `status` only if blocked."""
    shape = {k: v for k, v in number.items() if k not in SERVER_FIELDS}
    if shape.get("status") != "blocked":
        shape.pop("status", None)
    return ordered(shape)


def ordered(shape: Mapping[str, Any]) -> dict[str, Any]:
    """Identity first, then the rest in the API's order: files read well and diff calmly."""
    first = [k for k in LEADING_FIELDS if k in shape]
    return {k: shape[k] for k in [*first, *(k for k in shape if k not in LEADING_FIELDS)]}


def placeholder_name(path: str, key: str) -> str:
    """`twilioAuthToken` of `twilio:+14155550100` → `TWILIO_AUTH_TOKEN_14155550100`."""
    field_part = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", path.replace(".", "_")).upper()
    key_part = re.sub(r"[^A-Za-z0-9]+", "_", key.split(":", 1)[-1]).strip("_").upper()
    return f"{field_part}_{key_part}"


def _is_masked(value: str) -> bool:
    return value.startswith("****") and value == mask(value)


# --- export -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Export:
    numbers: list[dict[str, Any]]
    variables: list[str]  # the placeholders the file holds, for import's environment
    skipped: list[str]  # ids of numbers without a lookup key (byo numbers without a number)


def build_export(listed: list[dict[str, Any]]) -> Export:
    """The export of listed numbers: create shapes, secrets as placeholders, sorted by key."""
    keyed: list[tuple[str, dict[str, Any]]] = []
    skipped: list[str] = []
    for number in listed:
        key = key_of(number)
        if key is None:
            skipped.append(str(number.get("id")))
        else:
            keyed.append((key, create_shape(number)))
    keyed.sort(key=lambda item: item[0])
    used: set[str] = set()
    numbers: list[dict[str, Any]] = []
    for key, shape in keyed:
        for path in secret_fields(shape["provider"]):
            if isinstance(get_path(shape, path), str):
                # Named by the number alone, as before numbers were keyed by account.
                name = base = placeholder_name(path, number_only_key(key) or key)
                suffix = 2
                while name in used:  # two keys that read alike once sanitised
                    name, suffix = f"{base}_{suffix}", suffix + 1
                used.add(name)
                shape = map_paths(shape, (path,), lambda _, name=name: f"${{{name}}}")  # type: ignore[misc]
        numbers.append(shape)
    return Export(numbers, sorted(used), skipped)


EXPORT_HEADER: Final = """\
# Phone numbers exported by `router numbers export`, sorted by lookup key.
# Secrets are not exported (the API returns them masked): each secret field holds a
# ${VARIABLE} placeholder that `router numbers import` reads from the environment.
# A secret left out, or whose variable is unset, keeps the value the target already has.
"""


def render_export(export: Export, fmt: Format) -> str:
    """The file's text: YAML with a header comment, or JSON."""
    document = {"numbers": export.numbers}
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return EXPORT_HEADER + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000)


# --- import: reading the file -----------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    """One number of the import file, validated: the create shape it asks for."""

    index: int
    key: str
    desired: dict[str, Any]
    # Secret paths the file names but does not supply (unset variable, masked value).
    unsupplied: list[str] = field(default_factory=list)
    # Variables of those, for messages.
    variables: dict[str, str] = field(default_factory=dict)


def load_document(text: str, source: str) -> list[Any]:
    """The list of numbers of a YAML or JSON file: a list, or `{"numbers": [...]}`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TransferError([f"{source}: not valid YAML or JSON: {exc}"]) from None
    if isinstance(data, dict) and set(data) == {"numbers"}:
        data = data["numbers"]
    if not isinstance(data, list):
        raise TransferError([f'{source}: expected a list of numbers or {{"numbers": [...]}}'])
    return data


def read_entries(items: list[Any], env: Mapping[str, str]) -> list[Entry]:
    """Validate every number as its provider's create DTO; all problems in one error."""
    problems: list[str] = []
    entries: list[Entry] = []
    owners: dict[str, int] = {}
    for index, item in enumerate(items):
        where = f"numbers[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where} must be an object")
            continue
        provider = item.get("provider")
        if provider not in CREATE_MODELS:
            problems.append(f"{where}.provider must be one of: {', '.join(PROVIDERS)}")
            continue
        data = {k: v for k, v in item.items() if k not in SERVER_FIELDS}
        entry = Entry(index, "", {})
        for path in secret_fields(provider):
            data = _resolve_secret(data, path, env, entry)
        try:
            dto = CREATE_MODELS[provider].model_validate(data)
        except ValidationError as exc:
            problems.extend(f"{where}: {m}" for m in validation_messages(exc, data=data))
            continue
        desired = ordered(dto.wire())
        if desired.get("status") == "active":
            desired.pop("status")
        key = key_of(desired)
        if key is None:
            need = "a sipUri" if provider == "vapi" else "a number"
            problems.append(f"{where}: a {provider} number needs {need} to be imported (its key)")
            continue
        if key in owners:
            problems.append(f"{where}: {key} is already numbers[{owners[key]}]")
            continue
        owners[key] = index
        entry.key, entry.desired = key, desired
        entries.append(entry)
    if problems:
        raise TransferError(problems)
    return entries


def _resolve_secret(
    data: dict[str, Any], path: str, env: Mapping[str, str], entry: Entry
) -> dict[str, Any]:
    """Put the secret at `path` in clear, or note it as not supplied (a dummy validates)."""
    *parents, leaf = path.split(".")
    parent = get_path(data, ".".join(parents)) if parents else data
    if not isinstance(parent, dict) or (not parents and leaf not in data):
        return data  # no such object, or a top-level secret left out: nothing to resolve
    value = parent.get(leaf)
    if isinstance(value, str) and (match := PLACEHOLDER.match(value)):
        supplied = env.get(match[1])
        if supplied:
            return map_paths(data, (path,), lambda _: supplied)
        entry.variables[path] = match[1]
    elif isinstance(value, str) and not _is_masked(value):
        return data  # a secret written in clear
    elif value is not None and not isinstance(value, str):
        return data  # let validation name the type error
    entry.unsupplied.append(path)
    return _set_path(data, path, _DUMMY_SECRET)


def _set_path(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    *parents, leaf = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    node[leaf] = value
    return out  # type: ignore[no-any-return]


# --- import: planning -------------------------------------------------------------------------


@dataclass(slots=True)
class Action:
    """What import does to one number: create it, PATCH it, or nothing."""

    entry: Entry
    kind: Literal["create", "update", "unchanged"]
    body: dict[str, Any]  # the POST body or the PATCH
    current: dict[str, Any] | None = None  # the target's create shape (secrets masked)
    number_id: str | None = None


def plan(entries: list[Entry], listed: list[dict[str, Any]]) -> list[Action]:
    """Match the file to the target by lookup key; all secret problems in one error."""
    remote = {key: n for n in listed if (key := key_of(n)) is not None}
    problems: list[str] = []
    actions: list[Action] = []
    for entry in entries:
        number = remote.get(entry.key)
        desired = entry.desired
        if number is None:
            for path in entry.unsupplied:
                problems.append(_unsupplied(entry, path, "to create it"))
            actions.append(Action(entry, "create", desired))
            continue
        current = create_shape(number)
        for path in entry.unsupplied:
            stored = get_path(current, path)
            if not isinstance(stored, str):
                problems.append(_unsupplied(entry, path, "and the target has none"))
                continue
            # Sent back masked, the API keeps the stored secret.
            desired = _set_path(desired, path, stored)
        patch = changes(current, desired, secret_fields(entry.desired["provider"]))
        kind: Literal["update", "unchanged"] = "update" if patch else "unchanged"
        actions.append(Action(entry, kind, patch, current, number["id"]))
    if problems:
        raise TransferError(problems)
    return actions


def _unsupplied(entry: Entry, path: str, why: str) -> str:
    variable = entry.variables.get(path)
    how = f"set ${variable}" if variable else "give its value or a ${VARIABLE}"
    return f"numbers[{entry.index}] ({entry.key}): {path} is not supplied {why}: {how}"


def changes(
    current: dict[str, Any], desired: dict[str, Any], secrets: tuple[str, ...]
) -> dict[str, Any]:
    """The PATCH turning `current` into `desired`: changed top-level fields, `null` clears.

    Secrets compare by their masked form, which is all the API shows of the stored ones.
    """
    seen = map_paths(desired, secrets, mask)
    patch: dict[str, Any] = {k: desired[k] for k in desired if seen[k] != current.get(k)}
    for gone in sorted(current.keys() - desired.keys()):
        if gone in secrets:
            continue  # a secret the file leaves out keeps its stored value
        patch[gone] = "active" if gone == "status" else None
    return patch


# --- import: writing and reporting ------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    action: Action
    error: ApiFailure | None = None
    number_id: str | None = None


async def apply(client: Client, actions: list[Action]) -> list[Outcome]:
    """Send the creates and PATCHes, a few at a time; every failure is kept, none stops the rest."""
    gate = asyncio.Semaphore(WRITE_CONCURRENCY)

    async def run(action: Action) -> Outcome:
        async with gate:
            try:
                if action.kind == "create":
                    created = await client.create(action.body)
                    return Outcome(action, number_id=created.get("id"))
                assert action.number_id is not None
                await client.update(action.number_id, action.body)
                return Outcome(action, number_id=action.number_id)
            except ApiFailure as exc:
                return Outcome(action, error=exc)

    return list(await asyncio.gather(*(run(a) for a in actions if a.kind != "unchanged")))


def _hidden(doc: dict[str, Any], secrets: tuple[str, ...]) -> dict[str, Any]:
    return map_paths(doc, secrets, lambda _: SHOWN_SECRET)


def _leaves(value: Any, prefix: str) -> dict[str, Any]:
    """`{"a": {"b": [1]}}` → `{"a.b[0]": 1}`: the diff shows the fields that changed."""
    out: dict[str, Any] = {}
    if isinstance(value, dict) and value:
        for k, v in value.items():
            out.update(_leaves(v, f"{prefix}.{k}"))
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            out.update(_leaves(v, f"{prefix}[{i}]"))
    else:
        out[prefix] = value
    return out


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def describe(action: Action) -> list[str]:
    """The dry-run lines of one action: each field set, changed or cleared; secrets hidden."""
    secrets = secret_fields(action.entry.desired["provider"])
    if action.kind == "create":
        lines = [f"create {action.entry.key}"]
        for name, value in _hidden(action.body, secrets).items():
            lines += [f"    {path}: {_text(v)}" for path, v in _leaves(value, name).items()]
        return lines
    if action.kind == "unchanged":
        return []
    current = action.current or {}
    after = {k: v for k, v in {**current, **action.body}.items() if v is not None}
    # Compared masked (a secret echoed back masked is unchanged), shown hidden.
    old_all = _leaves(current, "")
    new_all = _leaves(map_paths(after, secrets, mask), "")
    old_shown = _leaves(_hidden(current, secrets), "")
    new_shown = _leaves(_hidden(after, secrets), "")
    lines = [f"update {action.entry.key} ({action.number_id})"]
    for path in dict.fromkeys([*old_all, *new_all]):
        if old_all.get(path, _ABSENT) == new_all.get(path, _ABSENT):
            continue
        before = _text(old_shown[path]) if path in old_shown else "(unset)"
        later = _text(new_shown[path]) if path in new_shown else "(cleared)"
        lines.append(f"    {path.removeprefix('.')}: {before} → {later}")
    return lines


def report(actions: list[Action], outcomes: list[Outcome], out: TextIO, err: TextIO) -> int:
    """Print what was written and what failed; the exit code (1 if any number failed)."""
    counts = {"created": 0, "updated": 0, "failed": 0}
    for outcome in outcomes:
        action = outcome.action
        if outcome.error is not None:
            counts["failed"] += 1
            print(f"failed {action.entry.key}: {outcome.error}", file=err)
        elif action.kind == "create":
            counts["created"] += 1
            print(f"created {action.entry.key} ({outcome.number_id})", file=out)
        else:
            counts["updated"] += 1
            print(f"updated {action.entry.key}: {', '.join(sorted(action.body))}", file=out)
    unchanged = sum(a.kind == "unchanged" for a in actions)
    print(
        f"{counts['created']} created, {counts['updated']} updated, {unchanged} unchanged, "
        f"{counts['failed']} failed",
        file=out,
    )
    return 1 if counts["failed"] else 0


def report_dry_run(actions: list[Action], out: TextIO) -> int:
    """The dry-run diff and its summary; nothing was written."""
    for action in actions:
        for line in describe(action):
            print(line, file=out)
    creates = sum(a.kind == "create" for a in actions)
    updates = sum(a.kind == "update" for a in actions)
    unchanged = sum(a.kind == "unchanged" for a in actions)
    print(
        f"dry run: {creates} to create, {updates} to update, {unchanged} unchanged; "
        "nothing was written",
        file=out,
    )
    return 0


# --- the commands -----------------------------------------------------------------------------


async def run_export(url: str, api_key: str) -> Export:
    """Read every number of the org behind `api_key` and build the export."""
    async with session() as http:
        return build_export(await Client(http, url, api_key).numbers())


async def run_import(
    url: str,
    api_key: str,
    items: list[Any],
    env: Mapping[str, str],
    *,
    dry_run: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    """Validate the file, plan against the target, then write (or print the plan)."""
    entries = read_entries(items, env)  # before any request: a bad file touches nothing
    async with session() as http:
        client = Client(http, url, api_key)
        actions = plan(entries, await client.numbers())
        if dry_run:
            return report_dry_run(actions, out)
        return report(actions, await apply(client, actions), out, err)
