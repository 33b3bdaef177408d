"""The CMC wire vocabulary: request builders, envelope parsing, error and close-code tables.

Nothing here does I/O. The tables are CMC's own (see the protocol reference in the docs);
the policy sets say what the client does with each close code and HTTP status.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

from cmcsync.exceptions import ProtocolError, ServerError

_fast_loads: Callable[[str | bytes], Any] | None
try:
    # An optional accelerator (the ``fast`` extra): about a third faster than json.loads
    # on CMC's frames, with the same results (see parse_frame).
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - depends on the environment
    _fast_loads = None
_DIGITS_TO_9 = bytes.maketrans(b"012345678", b"999999999")
_LONG_DIGITS = b"9" * 19

#: The production endpoint.
DEFAULT_URL: Final = "wss://pro-stream.coinmarketcap.com/v1"

#: The handshake header that carries the API key.
API_KEY_HEADER: Final = "X-CMC_PRO_API_KEY"

#: Environment variable read when no key is passed.
API_KEY_ENV: Final = "CMC_PRO_API_KEY"

#: Seconds between JSON pings when the server sends no welcome.
DEFAULT_PING_INTERVAL: Final = 10.0

#: error_code -> (category, error_message), as CMC documents them.
ERROR_CODES: Final[Mapping[int, tuple[str, str]]] = {
    1001: ("AUTH", "This API Key is invalid."),
    1002: ("AUTH", "API key missing."),
    1003: ("AUTH", "Your API Key must be activated."),
    1004: ("AUTH", "Your API Key subscription plan has expired."),
    1006: ("AUTH", "Your plan does not support this endpoint."),
    1007: ("AUTH", "This API Key has been disabled. Please contact support."),
    1010: ("AUTH", "Monthly credit limit exceeded."),
    2201: ("PROTOCOL", "Invalid request format."),
    2202: ("PROTOCOL", "Unknown method."),
    2203: ("PROTOCOL", "Message length is not right."),
    2204: ("PROTOCOL", "Missing required field."),
    2301: ("PROTOCOL", "Channel does not exist."),
    2302: ("PROTOCOL", "Channel not available on your plan."),
    2303: ("PROTOCOL", "Subscription limit reached."),
    2304: ("PROTOCOL", "Connection limit reached."),
    2401: ("PROTOCOL", "Missing required param for channel."),
    2402: ("PROTOCOL", "Invalid param for channel."),
    5001: ("SERVER", "Internal server error."),
}

#: Error codes worth sending the same request again for, after a backoff: the server's own
#: failures, not the request's.
TRANSIENT_ERROR_CODES: Final = frozenset({5001})

#: WebSocket close code -> CMC's reason text. CMC gives 1012-1014 meanings of its own.
CLOSE_CODES: Final[Mapping[int, str]] = {
    1000: "Normal close",
    1001: "Write idle timeout",
    1006: "Abnormal closure",
    1011: "Send failure",
    1012: "Frame sink cancellation",
    1013: "Close topic signal",
    1014: "Unknown close reason",
    4004: "Connection limit",
    4100: "API key invalid",
    4101: "API key disabled",
    4102: "Plan not support WS",
}

#: Close codes that mean the key or plan is refused: stop, never retry.
FATAL_CLOSE_CODES: Final = frozenset({4100, 4101, 4102})
#: Handshake statuses that mean the same.
FATAL_HTTP_STATUSES: Final = frozenset({401, 403})
#: Close codes after which the client waits long before trying again.
LONG_BACKOFF_CLOSE_CODES: Final = frozenset({4004})
#: Handshake statuses after which the client waits long before trying again.
LONG_BACKOFF_HTTP_STATUSES: Final = frozenset({429})

#: What each fatal close code or handshake status means for the user.
_AUTH_HINT = {
    4100: "the server does not know this API key; check CMC_PRO_API_KEY",
    4101: "this API key is disabled; contact CoinMarketCap support",
    4102: "this API key's plan does not include the WebSocket API (Startup plan or above)",
    401: "the server refused the handshake: the API key is missing or invalid",
    403: "the server refused the handshake: the key or its plan is not allowed",
}


def describe_close(code: int | None, reason: str = "") -> str:
    """Return a one-line description of a close code, with CMC's reason text."""
    if code is None:
        return "connection lost without a close frame"
    known = CLOSE_CODES.get(code)
    text = f"close {code}"
    if known:
        text += f" ({known})"
    if reason and reason != known:
        text += f": {reason}"
    return text


def auth_hint(code: int) -> str:
    """What a fatal close code or HTTP status means for the user."""
    return _AUTH_HINT.get(code, "the server refused the API key")


# --- requests ----------------------------------------------------------------------------


def dumps(message: Mapping[str, Any]) -> str:
    """Serialize one request compactly."""
    return json.dumps(message, separators=(",", ":"))


def subscribe_request(request_id: int, channel: str, params: Mapping[str, Any]) -> str:
    """Build a ``subscribe`` request."""
    return dumps({"id": request_id, "method": "subscribe", "channel": channel, "params": params})


def unsubscribe_request(
    request_id: int, channel: str, params: Mapping[str, Any] | None = None
) -> str:
    """Build an ``unsubscribe`` request; without ``params`` it drops the whole channel."""
    message: dict[str, Any] = {"id": request_id, "method": "unsubscribe", "channel": channel}
    if params is not None:
        message["params"] = params
    return dumps(message)


def unsubscribe_all_request(request_id: int) -> str:
    """Build an ``unsubscribe_all`` request."""
    return dumps({"id": request_id, "method": "unsubscribe_all"})


def ping_request(request_id: int) -> str:
    """Build a JSON ``ping`` request."""
    return dumps({"id": request_id, "method": "ping"})


# --- envelopes ---------------------------------------------------------------------------


def parse_frame(text: str | bytes, *, parse_float: Any = None) -> dict[str, Any]:
    """Parse one text frame into its envelope.

    With orjson installed (the ``fast`` extra) and no ``parse_float``, orjson parses. Frames
    where it would differ from the standard library are parsed by the standard library: the
    ones orjson refuses (``NaN``, ``1e400``, a lone surrogate escape, invalid UTF-8...) and
    the ones with 19 or more digits in a row (an integer orjson would turn into a float).
    The result and the errors are the same either way. ``parse_float`` (``Decimal``, to
    keep prices exact) always uses the standard library: orjson has no such option.

    :param text: the frame's payload, as received (UTF-8 bytes) or decoded.
    :param parse_float: passed to :func:`json.loads`.
    :raises ProtocolError: ``not_utf8`` for bytes that are not UTF-8, ``not_json`` for text
        that is not JSON, ``not_object`` for JSON that is not an object, ``missing_field``
        for an object without a string ``type``.
    """
    message: Any = None
    if (
        parse_float is None
        and _fast_loads is not None
        # orjson reads an integer beyond 64 bits as a float; the standard library keeps it
        # exact. 19 digits in a row (after mapping every digit to 9) may be such a number.
        and _LONG_DIGITS
        not in (text if isinstance(text, bytes) else text.encode()).translate(_DIGITS_TO_9)
    ):
        try:
            message = _fast_loads(text)
        except ValueError:  # orjson.JSONDecodeError is a ValueError
            message = _loads(text, None)
    else:
        message = _loads(text, parse_float)
    if message.__class__ is not dict:
        raise ProtocolError(
            f"frame is JSON {type(message).__name__}, not an object", kind="not_object"
        )
    if message.get("type").__class__ is not str:
        raise ProtocolError("frame has no 'type' field", kind="missing_field")
    return message


@functools.cache
def frame_parser(parse_float: Any = None) -> Callable[[str | bytes], dict[str, Any]]:
    """:func:`parse_frame` with these options, specialized for the reader's bytes.

    The same results and errors as ``parse_frame(payload, parse_float=parse_float)``,
    for less per call: the reader thread parses every frame with it.
    """
    fast = _fast_loads
    if parse_float is not None or fast is None:
        return functools.partial(parse_frame, parse_float=parse_float)

    def parse(payload: str | bytes) -> dict[str, Any]:
        if payload.__class__ is bytes and _LONG_DIGITS not in payload.translate(_DIGITS_TO_9):
            try:
                message = fast(payload)
            except ValueError:
                return parse_frame(payload)
            if message.__class__ is dict and message.get("type").__class__ is str:
                return message
        return parse_frame(payload)

    return parse


def _loads(text: str | bytes, parse_float: Any) -> Any:
    """The standard library's parse, with cmcsync's errors."""
    if isinstance(text, (bytes, bytearray)):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("text frame is not valid UTF-8", kind="not_utf8") from None
    try:
        return json.loads(text, parse_float=parse_float)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"frame is not valid JSON: {exc}", kind="not_json") from None


def request_id(message: Mapping[str, Any]) -> int | None:
    """The echoed request id of an ack, error or pong, if it is an integer."""
    value = message.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def server_error(message: Mapping[str, Any]) -> ServerError:
    """Turn an ``error`` envelope into a :class:`ServerError` with the server's fields.

    Tolerates an ``error_code`` sent as a string or an integer, and a missing ``status``.
    """
    status = message.get("status")
    if not isinstance(status, Mapping):
        status = {}
    raw_code = status.get("error_code", message.get("code"))
    code: int | None
    try:
        code = int(raw_code) if raw_code is not None else None
    except (TypeError, ValueError):
        code = None
    category = status.get("category")
    text = status.get("error_message")
    if code is not None and code in ERROR_CODES:
        category = category or ERROR_CODES[code][0]
        text = text or ERROR_CODES[code][1]
    detail = status.get("error_detail")
    return ServerError(
        code,
        str(category) if category is not None else None,
        str(text) if text is not None else None,
        str(detail) if detail is not None else None,
    )
