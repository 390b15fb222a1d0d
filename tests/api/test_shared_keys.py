"""Twilio shared keys on the credential (SPEC §13): sealed, masked, kept on a masked echo."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from router.manage.documents import merge_patch
from router.manage.secrecy import SecretBox, keep_masked, map_paths, mask, path_values
from router.models.credentials import TwilioCredential
from router.state import CREDENTIALS

from .conftest import (
    CREDENTIAL_AUTH_TOKEN,
    DEFAULT_ORG,
    Api,
    MakeSettings,
    StartApi,
    expect,
    masked,
    rejected,
    twilio_credential,
)
from .test_secrets import raw_storage

FIRST_SECRET = "first-shared-key-SECRET-0001"
SECOND_SECRET = "second-shared-key-SECRET-0002"
PATH = "sharedKeys[sid].secret"


def shared_keys(*secrets: str) -> list[dict[str, str]]:
    return [{"sid": f"webhooks_sharedkey_{i}", "secret": s} for i, s in enumerate(secrets)]


async def stored(api: Api, credential_id: str) -> TwilioCredential:
    credential = await api.app[CREDENTIALS].get(DEFAULT_ORG, credential_id)
    assert isinstance(credential, TwilioCredential)
    return credential


# --- list paths in secrecy.py -------------------------------------------------------------


def test_list_paths_seal_open_and_mask_every_element() -> None:
    """`name[id].leaf` reaches the leaf of every element; other fields are untouched."""
    box = SecretBox("a passphrase")
    doc: dict[str, Any] = {
        "authToken": "t" * 20,
        "sharedKeys": shared_keys(FIRST_SECRET, SECOND_SECRET),
    }
    paths = ("authToken", PATH)
    sealed = map_paths(doc, paths, box.encrypt)
    assert [k["sid"] for k in sealed["sharedKeys"]] == [
        "webhooks_sharedkey_0",
        "webhooks_sharedkey_1",
    ]
    assert all(k["secret"].startswith("enc:v1:") for k in sealed["sharedKeys"])
    assert doc["sharedKeys"][0]["secret"] == FIRST_SECRET  # a copy: the input is kept
    assert map_paths(sealed, paths, box.decrypt) == doc
    shown = map_paths(doc, paths, mask)
    assert [k["secret"] for k in shown["sharedKeys"]] == [
        masked(FIRST_SECRET),
        masked(SECOND_SECRET),
    ]
    assert path_values(doc, PATH) == [
        ("sharedKeys[0].secret", FIRST_SECRET),
        ("sharedKeys[1].secret", SECOND_SECRET),
    ]


@pytest.mark.parametrize("keys", [None, [], "text", [None, {"sid": "x"}, {"secret": 3}]])
def test_list_paths_skip_what_is_absent_or_not_a_list_of_objects(keys: Any) -> None:
    doc = {"sharedKeys": keys}
    assert map_paths(doc, (PATH,), mask) == doc
    assert path_values(doc, PATH) == []


def test_masked_echo_is_matched_by_id_not_position() -> None:
    """Each echoed mask gets the stored secret of the element with its own id; a new
    element, or one whose id changed, keeps what was sent."""
    current = {"sharedKeys": shared_keys(FIRST_SECRET, SECOND_SECRET)}
    patch = {
        "sharedKeys": [
            {"sid": "webhooks_sharedkey_1", "secret": masked(SECOND_SECRET)},
            {"sid": "webhooks_sharedkey_0", "secret": masked(FIRST_SECRET)},
            {"sid": "webhooks_sharedkey_9", "secret": masked(FIRST_SECRET)},
        ]
    }
    merged = merge_patch(current, patch, required=(), secrets=(PATH,))
    assert [k["secret"] for k in merged["sharedKeys"]] == [
        SECOND_SECRET,
        FIRST_SECRET,
        masked(FIRST_SECRET),
    ]
    assert patch["sharedKeys"][0]["secret"] == masked(SECOND_SECRET)  # the patch is not changed
    crossed = {"sharedKeys": [{"sid": "webhooks_sharedkey_0", "secret": masked(SECOND_SECRET)}]}
    keep_masked(current, crossed, (PATH,))
    assert crossed["sharedKeys"][0]["secret"] == masked(SECOND_SECRET)


# --- the API ------------------------------------------------------------------------------


async def test_shared_keys_are_created_masked_and_stored_in_clear_for_the_worker(
    api: Api,
) -> None:
    """POST answers each key's sid as given and its secret masked; the worker reads both."""
    body = twilio_credential(sharedKeys=shared_keys(FIRST_SECRET, SECOND_SECRET))
    with capture_logs() as logs:
        created = await api.create_credential(body)
    assert created["sharedKeys"] == [
        {"sid": "webhooks_sharedkey_0", "secret": masked(FIRST_SECRET)},
        {"sid": "webhooks_sharedkey_1", "secret": masked(SECOND_SECRET)},
    ]
    assert created["authToken"] == masked(CREDENTIAL_AUTH_TOKEN)
    path = f"/credential/{created['id']}"
    assert expect(await api.get(path), 200) == created
    assert expect(await api.get("/credential"), 200) == [created]
    credential = await stored(api, created["id"])
    assert credential.shared_key_secrets("webhooks_sharedkey_1") == [SECOND_SECRET]
    assert FIRST_SECRET not in repr(logs) and SECOND_SECRET not in repr(logs)


async def test_patch_echoing_masked_shared_keys_keeps_their_secrets(api: Api) -> None:
    """A GET sent back (keys reordered, one added) keeps each stored secret by its sid."""
    created = await api.create_credential(
        twilio_credential(sharedKeys=shared_keys(FIRST_SECRET, SECOND_SECRET))
    )
    path = f"/credential/{created['id']}"
    echoed = [
        *reversed(created["sharedKeys"]),
        {"sid": "webhooks_sharedkey_new", "secret": "n" * 16},
    ]
    with capture_logs() as logs:
        patched = expect(await api.patch(path, {"sharedKeys": echoed}), 200)
    assert [k["sid"] for k in patched["sharedKeys"]] == [k["sid"] for k in echoed]
    credential = await stored(api, created["id"])
    assert credential.shared_key_secrets("webhooks_sharedkey_0") == [FIRST_SECRET]
    assert credential.shared_key_secrets("webhooks_sharedkey_1") == [SECOND_SECRET]
    assert credential.shared_key_secrets("webhooks_sharedkey_new") == ["n" * 16]
    assert FIRST_SECRET not in repr(logs) and "n" * 16 not in repr(logs)

    # Another field alone leaves the keys as they are; a new secret replaces one; null clears.
    expect(await api.patch(path, {"name": "rotating"}), 200)
    assert (await stored(api, created["id"])).shared_key_secrets("webhooks_sharedkey_0")
    rotated = [{"sid": "webhooks_sharedkey_0", "secret": "rotated-SECRET-00"}]
    expect(await api.patch(path, {"sharedKeys": rotated}), 200)
    credential = await stored(api, created["id"])
    assert credential.shared_key_secrets("webhooks_sharedkey_0") == ["rotated-SECRET-00"]
    assert credential.shared_key_secrets("webhooks_sharedkey_1") == []
    assert "sharedKeys" not in expect(await api.patch(path, {"sharedKeys": None}), 200)


async def test_shared_key_bounds_are_400s_naming_the_field(api: Api) -> None:
    too_many = [{"sid": f"sk{i}", "secret": "s"} for i in range(11)]
    cases: list[tuple[Any, str]] = [
        (too_many, "sharedKeys must contain no more than 10 elements"),
        ([{"sid": "", "secret": "s"}], "sharedKeys[0].sid must be longer than or equal to 1"),
        (
            [{"sid": "s" * 65, "secret": "s"}],
            "sharedKeys[0].sid must be shorter than or equal to 64",
        ),
        ([{"sid": "a,b", "secret": "s"}], "sharedKeys[0].sid"),
        ([{"sid": "sk", "secret": ""}], "sharedKeys[0].secret must be longer than or equal to 1"),
        (
            [{"sid": "sk", "secret": "s" * 401}],
            "sharedKeys[0].secret must be shorter than or equal",
        ),
        ([{"sid": "sk", "secret": "s"}, {"sid": "sk", "secret": "t"}], "sharedKeys"),
        ([{"sid": "sk"}], "sharedKeys[0].secret"),
        ([{"sid": "sk", "secret": "s", "extra": 1}], "extra should not exist"),
        ("sk", "sharedKeys"),
        (
            [{"sid": "sk", "secret": "enc:v1:abc"}],
            "sharedKeys[0].secret must not start with enc:v1:",
        ),
    ]
    for keys, fragment in cases:
        message = rejected(await api.post("/credential", twilio_credential(sharedKeys=keys)))
        assert fragment in message, (keys, message)
        assert "s" * 401 not in message
    assert "sid twice" in rejected(
        await api.post("/credential", twilio_credential(sharedKeys=shared_keys("a", "b") * 2))
    )
    created = await api.create_credential(twilio_credential())
    patch = {"sharedKeys": [{"sid": "sk", "secret": "s"}] * 2}
    assert "sharedKeys" in rejected(await api.patch(f"/credential/{created['id']}", patch))
    assert expect(await api.get("/credential"), 200) == [created]


async def test_shared_key_secrets_are_encrypted_at_rest_and_survive_a_restart(
    backend: str, start_api: StartApi, make_settings: MakeSettings
) -> None:
    """With ROUTER_SECRET_KEY each shared key's secret is stored sealed, its sid in clear."""
    settings = make_settings(secret_key="a passphrase only the operator knows")
    api = await start_api(settings)
    created = await api.create_credential(
        twilio_credential(sharedKeys=shared_keys(FIRST_SECRET, SECOND_SECRET))
    )
    raw = await raw_storage(backend, settings.data_dir, settings.redis_url)
    assert FIRST_SECRET not in raw and SECOND_SECRET not in raw
    assert raw.count("enc:v1:") == 3  # the auth token and two secrets
    assert "webhooks_sharedkey_1" in raw
    await api.client.close()

    restarted = await start_api(settings)
    assert expect(await restarted.get(f"/credential/{created['id']}"), 200) == created
    credential = await stored(restarted, created["id"])
    assert credential.shared_key_secrets("webhooks_sharedkey_0") == [FIRST_SECRET]
    path = f"/credential/{created['id']}"
    expect(await restarted.patch(path, {"sharedKeys": created["sharedKeys"]}), 200)
    raw = await raw_storage(backend, settings.data_dir, settings.redis_url)
    assert FIRST_SECRET not in raw and raw.count("enc:v1:") == 3
    credential = await stored(restarted, created["id"])
    assert credential.shared_key_secrets("webhooks_sharedkey_1") == [SECOND_SECRET]
