"""schemathesis over `/openapi.json` of a real `router serve`, authenticated, with all its
checks: no 5xx, no status or body the document does not declare, every request it calls
valid accepted and every invalid one refused. Examples are bounded per operation so the
whole run stays around a minute on two cores."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from .served import router_serve

# Every operation runs inside this one test (as subtests): about a minute on two cores,
# more on a busy machine, so the suite's 60 s per test is too tight for it.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

API_KEY = "schemathesis-test-key"
# Per operation and generation mode; ~20 operations.
MAX_EXAMPLES = 40


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    with router_serve(tmp_path_factory.mktemp("schemathesis"), API_KEY) as base_url:
        yield schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=CONFIG)


CONFIG = schemathesis.Config.from_dict(
    {
        # The coverage phase walks every branch of the seed's deeply nested schemas (hooks,
        # destinations, plans): minutes for one operation on two cores. Fuzzing, positive
        # and negative, covers the same checks within the bound.
        "phases": {"coverage": {"enabled": False}},
        "generation": {
            # No extra parameters as negative cases: unknown query parameters are ignored,
            # as Vapi's API does (README: API decisions), so they are no violation.
            "allow-extra-parameters": False,
            # The bearer key is sent by the test: a case "without" it would still carry it.
            "with-security-parameters": False,
        },
        "checks": {
            # What the seed's schemas cannot say (E.164 numbers, URLs, a credentialId that
            # exists in the org) is refused with a 400, as by Vapi's own validators.
            "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "404", "409"]},
        },
    }
)
schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_every_operation_keeps_its_document(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {API_KEY}"})
