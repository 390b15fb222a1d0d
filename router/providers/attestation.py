"""STIR/SHAKEN attestation as providers report it, read as router's levels (SPEC §12).

The `verstat` vocabulary (ATIS-1000074's verification status, as Twilio's `StirVerstat`
and the `verstat` parameter of a `P-Asserted-Identity` carry it):
`TN-Validation-Passed-A|B|C` → `A|B|C`, `TN-Validation-Passed` (Telnyx's form for A)
→ `A`, `TN-Validation-Failed` with any suffix → `failed`; `No-TN-Validation`, nothing, or
a value router does not know → `none`. Case and surrounding spaces do not matter.
"""

from __future__ import annotations

from typing import Final

from router.models.ringing import Attestation

_PASSED: Final[dict[str, Attestation]] = {
    "tn-validation-passed-a": "A",
    "tn-validation-passed-b": "B",
    "tn-validation-passed-c": "C",
    "tn-validation-passed": "A",
}
_FAILED_PREFIX: Final = "tn-validation-failed"


def verstat_level(value: object) -> Attestation:
    """The level a `verstat` value says; `none` for anything else."""
    if not isinstance(value, str):
        return "none"
    key = value.strip().lower()
    level = _PASSED.get(key)
    if level is not None:
        return level
    return "failed" if key.startswith(_FAILED_PREFIX) else "none"
