"""`hmac_digest`: a keyed HMAC made once per secret and copied gives, call after call and
secret after secret, exactly what the one-shot `hmac.digest` gives."""

from __future__ import annotations

import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from router.providers.plugin import hmac_digest, text_bytes

DIGESTS = st.sampled_from(["sha1", "sha256"])


@settings(max_examples=300)
@given(
    calls=st.lists(
        st.tuples(st.sampled_from(["token-a", "token-b", "é-token", ""]), st.binary(), DIGESTS),
        min_size=1,
        max_size=12,
    )
)
def test_each_digest_is_the_one_shot_digest_whatever_came_before(
    calls: list[tuple[str, bytes, str]],
) -> None:
    # The same secrets again and again, interleaved: a kept HMAC must never carry one
    # message into the next.
    for secret, message, digest in calls:
        assert hmac_digest(secret, message, digest) == hmac.digest(
            text_bytes(secret), message, digest
        )


def test_a_secret_that_is_not_utf8_is_hashed_as_its_bytes_not_refused() -> None:
    secret = "token-\udcff"
    assert hmac_digest(secret, b"m", "sha1") == hmac.digest(text_bytes(secret), b"m", "sha1")
    assert hmac_digest(secret, b"m", "sha1") != hmac_digest("token-", b"m", "sha1")
