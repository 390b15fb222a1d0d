"""What every provider puts on a call it connects to a runtime: the ids a SIP runtime
reads from `x-router-*` headers, and the callback URLs that tell router whether the
runtime took the call (router/runtimes/attempts.py, docs/runtimes.md)."""

from __future__ import annotations

import re
from typing import Final

from router.models.phone_numbers import AnyPhoneNumber
from router.pipeline.decision import Connect
from router.providers.plugin import RenderContext

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def runtime_headers(
    outcome: Connect, number: AnyPhoneNumber, ctx: RenderContext, warnings: list[str]
) -> dict[str, str]:
    """The `x-router-*` headers for a runtime's SIP leg; one that cannot be a SIP header
    value is dropped (an id cut short would name another target)."""
    values = {
        "x-router-call-id": ctx.call_id,
        "x-router-target": outcome.target,
        "x-router-target-id": outcome.target_id,
        "x-router-phone-number-id": number.id,
        "x-router-org-id": number.org_id,
    }
    headers: dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        if _CONTROL.search(value):
            warnings.append(f"header {name} dropped: control characters")
            continue
        headers[name] = value
    return headers


def callback_url(ctx: RenderContext, path: str, *, absolute: bool = False) -> str | None:
    """`path` under router's public URL with the attempt's query; None without one. With
    no public URL set it is relative (the provider resolves it against the URL it
    requested), or, when `absolute` (a provider that takes only fully qualified URLs),
    under the scheme and host the webhook arrived on."""
    if not ctx.callbacks:
        return None
    base = ctx.public_base or (ctx.request_base if absolute else "")
    return f"{base.rstrip('/')}{path}?{ctx.callbacks}"
