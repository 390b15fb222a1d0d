"""TwiML documents as strings: escaping and the verbs routing uses, within Twilio's limits.

Built from string pieces rather than an element tree, which would be many times slower
for documents this small.
Every value passes `xml_text` / `xml_attr`, which escape markup and drop what XML 1.0
cannot carry, so no user-supplied string can change the document's structure. Telnyx
TeXML takes the same verbs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import quote

XML_DECLARATION: Final = '<?xml version="1.0" encoding="UTF-8"?>'
CONTENT_TYPE: Final = "text/xml; charset=utf-8"
PARAMETER_LIMIT: Final = 500  # name + value of a <Stream> <Parameter>, exclusive
SIP_URI_LIMIT: Final = 255  # a <Sip> URI without its headers, exclusive
SIP_HEADERS_LIMIT: Final = 1024  # the headers in a <Sip> URI's query, exclusive
DIAL_TIMEOUT_BOUNDS: Final = (5, 600)
# Headers <Sip> passes without the `x-` prefix.
SIP_PLAIN_HEADERS: Final = frozenset(
    {"user-to-user", "remote-party-id", "p-preferred-identity", "p-called-party-id"}
)

# Characters XML 1.0 forbids (C0 controls other than tab, LF, CR; lone surrogates; U+FFFE/F).
_FORBIDDEN = "[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]"
_FORBIDDEN_RE = re.compile(_FORBIDDEN)
_TEXT_SPECIAL = re.compile(f"[&<>]|{_FORBIDDEN}")
_ATTR_SPECIAL = re.compile(f'[&<>"\t\n\r]|{_FORBIDDEN}')
_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}
# Escaped so attribute-value normalisation does not turn them into spaces.
_ATTR_ESCAPES = {**_ESCAPES, "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}

_OPEN: Final = XML_DECLARATION + "<Response>"
_CLOSE: Final = "</Response>"
REJECT: Final = (_OPEN + "<Reject/>" + _CLOSE).encode()
EMPTY: Final = (XML_DECLARATION + "<Response/>").encode()


def xml_clean(value: str) -> str:
    """`value` without the characters XML 1.0 cannot carry."""
    return _FORBIDDEN_RE.sub("", value)


def xml_text(value: str) -> str:
    """`value` as element content: escaped, forbidden characters dropped."""
    if _TEXT_SPECIAL.search(value) is None:
        return value
    return _TEXT_SPECIAL.sub(lambda m: _ESCAPES.get(m.group(), ""), value)


def xml_attr(value: str) -> str:
    """`value` for a double-quoted attribute: escaped, forbidden characters dropped."""
    if _ATTR_SPECIAL.search(value) is None:
        return value
    return _ATTR_SPECIAL.sub(lambda m: _ATTR_ESCAPES.get(m.group(), ""), value)


def response(*verbs: str) -> bytes:
    """The document: declaration and `<Response>` around already-rendered verbs."""
    return (_OPEN + "".join(verbs) + _CLOSE).encode()


def say(text: str) -> str:
    """`<Say>`, or nothing for a text with nothing to speak."""
    text = xml_clean(text)
    return f"<Say>{xml_text(text)}</Say>" if text.strip() else ""


def connect_stream(
    url: str,
    parameters: Iterable[tuple[str, str]],
    warnings: list[str],
    *,
    attributes: Iterable[tuple[str, str]] = (),
    connect_attributes: Iterable[tuple[str, str]] = (),
) -> str:
    """`<Connect><Stream>` with `<Parameter>`s; one over the limit is dropped, never cut.

    Parameters carry ids: a truncated id would name another target. `attributes` are
    further `<Stream>` attributes after `url` (TeXML's `bidirectionalMode`, a
    `statusCallback`, ...), `connect_attributes` those of `<Connect>` (its `action`).
    """
    if not url.lower().startswith("wss://"):
        raise ValueError("a TwiML <Stream> needs a wss:// URL")  # Twilio error 31922
    if "?" in url:
        warnings.append("stream URL query string: Twilio <Stream> drops it")
    return _connect("Stream", url, parameters, warnings, attributes, connect_attributes)


def connect_relay(
    url: str,
    parameters: Iterable[tuple[str, str]],
    warnings: list[str],
    *,
    connect_attributes: Iterable[tuple[str, str]] = (),
) -> str:
    """`<Connect><ConversationRelay>` with `<Parameter>`s (Twilio hands them to the relay's
    websocket in its `setup` message), under the same limit as a stream's."""
    if not url.lower().startswith("wss://"):
        raise ValueError("a <ConversationRelay> needs a wss:// URL")
    return _connect("ConversationRelay", url, parameters, warnings, (), connect_attributes)


def _connect(
    noun: str,
    url: str,
    parameters: Iterable[tuple[str, str]],
    warnings: list[str],
    attributes: Iterable[tuple[str, str]],
    connect_attributes: Iterable[tuple[str, str]],
) -> str:
    parts = ["<Connect", *_attributes(connect_attributes), f'><{noun} url="', xml_attr(url), '"']
    parts += _attributes(attributes)
    parts.append(">")
    for name, raw in parameters:
        value = xml_clean(raw)
        if len(name) + len(value) >= PARAMETER_LIMIT:
            warnings.append(f"stream parameter {name} dropped: over the 500-character limit")
            continue
        parts += ('<Parameter name="', xml_attr(name), '" value="', xml_attr(value), '"/>')
    parts.append(f"</{noun}></Connect>")
    return "".join(parts)


def _attributes(pairs: Iterable[tuple[str, str]]) -> list[str]:
    parts: list[str] = []
    for name, value in pairs:
        parts += (" ", name, '="', xml_attr(value), '"')
    return parts


def dial(
    noun: str,
    caller_id: str | None = None,
    timeout: float | None = None,
    *,
    timeout_bounds: tuple[int, int] = DIAL_TIMEOUT_BOUNDS,
    action: str | None = None,
) -> str:
    """`<Dial>` around one noun; `timeout` is held within `timeout_bounds` (Twilio's
    5-600 seconds unless given); `action`: where the leg's outcome is posted."""
    attrs = f' action="{xml_attr(action)}" method="POST"' if action else ""
    if caller_id:
        attrs += f' callerId="{xml_attr(caller_id)}"'
    if timeout is not None:
        low, high = timeout_bounds
        attrs += f' timeout="{max(low, min(high, round(timeout)))}"'
    return f"<Dial{attrs}>{noun}</Dial>"


def number(phone_number: str, send_digits: str | None = None) -> str:
    """`<Number>`, with digits to send once the callee answers."""
    attrs = f' sendDigits="{xml_attr(send_digits)}"' if send_digits else ""
    return f"<Number{attrs}>{xml_text(xml_clean(phone_number))}</Number>"


def sip(uri: str, headers: Mapping[str, object], warnings: list[str]) -> str:
    """`<Sip>` with `headers` as URI query headers (`x-` added where Twilio requires it).

    Headers are added in order; one that would take the query past the limit is dropped
    and the next still tried, so the same input always gives the same URI.
    """
    uri = xml_clean(uri)
    if len(uri) >= SIP_URI_LIMIT:
        warnings.append("SIP URI over the 255-character limit")
    query = ""
    for name, value in headers.items():
        if not name.lower().startswith("x-") and name.lower() not in SIP_PLAIN_HEADERS:
            name = f"x-{name}"
        # JSON spelling for booleans, as assistant-request headers are sent.
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        pair = f"{quote(name, safe='-_.!~*')}={quote(xml_clean(text), safe='')}"
        candidate = f"{query}&{pair}" if query else pair
        if len(candidate) >= SIP_HEADERS_LIMIT:
            warnings.append(f"SIP header {name} dropped: headers over the 1024-character limit")
            continue
        query = candidate
    if query:
        uri = f"{uri}{'&' if '?' in uri else '?'}{query}"
    return f"<Sip>{xml_text(uri)}</Sip>"
