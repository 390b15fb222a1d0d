"""A Vonage number's own transfer destinations are dialled by Vonage's NCCO `phone`
endpoint, which takes E.164 digits only: one it cannot dial is refused when saved."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Api, expect, rejected, vonage_body, vonage_credential


def to(number: str, **extra: Any) -> dict[str, Any]:
    return {"type": "number", "number": number, **extra}


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"fallbackDestination": to("Ops1", numberE164CheckEnabled=False)}, "fallbackDestination"),
        (
            {"overflowDestination": to("+0441234567", numberE164CheckEnabled=False)},
            "overflowDestination",
        ),
        (
            {
                "hooks": [
                    {
                        "on": "call.ringing",
                        "do": [
                            {
                                "type": "transfer",
                                "destination": to("desk", numberE164CheckEnabled=False),
                            }
                        ],
                    }
                ]
            },
            "hooks.0.do.0.destination",
        ),
        (
            {
                "hooks": [
                    {
                        "on": "call.ending",
                        "do": {
                            "type": "transfer",
                            "destination": to("12345", numberE164CheckEnabled=False),
                        },
                    }
                ]
            },
            "hooks.0.do.destination",
        ),
    ],
)
async def test_a_transfer_vonage_cannot_dial_is_refused_when_saved(
    api: Api, fields: dict[str, Any], where: str
) -> None:
    credential = await api.create_credential(vonage_credential())
    reply = await api.post("/phone-number", vonage_body(credential["id"], **fields))
    assert f"{where}.number must be a phone number Vonage can dial" in rejected(reply)
    created = expect(await api.post("/phone-number", vonage_body(credential["id"])), 201)
    patched = await api.patch(f"/phone-number/{created['id']}", fields)
    assert f"{where}.number must be a phone number Vonage can dial" in rejected(patched)


async def test_e164_transfers_are_accepted(api: Api) -> None:
    credential = await api.create_credential(vonage_credential())
    body = vonage_body(
        credential["id"],
        fallbackDestination=to("+14155550199"),
        overflowDestination=to("+447700900123"),
    )
    expect(await api.post("/phone-number", body), 201)
