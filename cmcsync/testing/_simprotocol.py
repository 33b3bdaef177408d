"""The simulator's side of the CMC wire protocol: request validation, acks and errors.

Everything here is pure: :func:`respond` takes one client frame and the connection's current
subscriptions and returns what the server answers and how the subscriptions change; the
simulator applies the change. The rules follow the protocol reference (§2 and §4), not
cmcsync's client code, so the client is tested against an independent reading:

- one subscription per element of the list param, which may be a scalar or an array;
  repeats inside one array count once;
- EVM hex addresses (``0x`` + hex digits) are compared case-insensitively and echoed in lower
  case; any other address (base58) is compared exactly;
- ``platform_id`` and ``crypto_ids`` must be positive integers; integral strings such as
  ``"14"`` are accepted because CMC does not say they are refused (lenient);
- unknown params are refused with 2402 (CMC has the code; one third-party client reports an
  ignored ``mode`` param, so this is the stricter reading, chosen to catch client typos);
- ``unsubscribe`` without ``params`` (or with ``null`` or ``{}``) drops the whole channel;
  unsubscribing something not subscribed is acked with ``sub_count`` unchanged (lenient);
- a subscribe that would exceed ``sub_limit`` is refused whole (2303), nothing of it added.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

import attrs

from cmcsync.channels import CHANNELS, Channel

__all__ = [
    "CLOSE_REASONS",
    "ERRORS",
    "Outcome",
    "SubKey",
    "error_frame",
    "params_echo",
    "record_of",
    "respond",
    "sub_key",
    "welcome_frame",
]

#: A subscription as the server sees it: channel and its normalized, scalar params.
SubKey = tuple[str, frozenset[tuple[str, Any]]]

#: ``error_code`` -> (category, error_message), as CMC's error table gives them.
ERRORS: Mapping[int, tuple[str, str]] = {
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

#: Close code -> reason text, as CMC's close-code table gives them.
CLOSE_REASONS: Mapping[int, str] = {
    1000: "Normal close",
    1001: "Write idle timeout",
    1011: "Send failure",
    1012: "Frame sink cancellation",
    1013: "Close topic signal",
    1014: "Unknown close reason",
    4004: "Connection limit",
    4100: "API key invalid",
    4101: "API key disabled",
    4102: "Plan not support WS",
}

_METHODS = ("subscribe", "unsubscribe", "unsubscribe_all", "ping")
_EVM_HEX = re.compile(r"0x[0-9a-fA-F]+")
_NO_ID = object()


class RequestError(Exception):
    """A request the server answers with an error envelope.

    :param code: the CMC ``error_code``.
    :param detail: the ``error_detail`` text.
    """

    def __init__(self, code: int, detail: str | None) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


@attrs.frozen
class Outcome:
    """What the server does about one client frame.

    :param reply: the frame to send back (ack, pong or error).
    :param added: subscriptions the request adds, in request order.
    :param removed: subscriptions the request removes.
    :param request: the decoded request, or ``None`` if the frame was not one.
    """

    reply: dict[str, Any]
    added: tuple[SubKey, ...] = ()
    removed: tuple[SubKey, ...] = ()
    request: dict[str, Any] | None = None


def now_ms() -> int:
    """Return the wall clock in epoch milliseconds."""
    return int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000)


def _iso_now() -> str:
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _with_id(frame: dict[str, Any], request_id: object) -> dict[str, Any]:
    if request_id is not _NO_ID and request_id is not None:
        return {"type": frame.pop("type"), "id": request_id, **frame}
    return frame


def error_frame(
    code: int, detail: str | None = None, request_id: object = _NO_ID
) -> dict[str, Any]:
    """Build a CMC error envelope.

    Codes outside CMC's table get a generic message and a category from their thousand
    (1xxx AUTH, 2xxx PROTOCOL, else SERVER), so tests can inject undocumented codes.

    :param code: the ``error_code``; sent as a string, like CMC's own example.
    :param detail: the ``error_detail``; omitted when ``None``.
    :param request_id: the request's ``id`` to echo; omitted when absent or ``None``.
    """
    default_category = {1: "AUTH", 2: "PROTOCOL"}.get(code // 1000, "SERVER")
    category, message = ERRORS.get(code, (default_category, f"Error {code}."))
    status: dict[str, Any] = {
        "timestamp": _iso_now(),
        "error_code": str(code),
        "category": category,
        "error_message": message,
    }
    if detail is not None:
        status["error_detail"] = detail
    return _with_id({"type": "error", "status": status}, request_id)


def welcome_frame(ping_interval_ms: int) -> dict[str, Any]:
    """Build the welcome message sent right after the upgrade."""
    return {"type": "welcome", "ping_interval_ms": ping_interval_ms}


def sub_key(channel: str, params: Mapping[str, Any]) -> SubKey:
    """Return the identity of one subscription (params already normalized and scalar)."""
    return (channel, frozenset(params.items()))


def params_echo(key: SubKey) -> dict[str, Any]:
    """Return a subscription's params as a data push echoes them, in the channel's order."""
    channel, items = key
    values = dict(items)
    row = CHANNELS.get(channel)
    order = row.params if row is not None else tuple(sorted(values))
    return {name: values[name] for name in order if name in values}


def record_of(frame: str | bytes) -> dict[str, Any]:
    """Return how a client frame is recorded: the JSON object, else ``{"_raw": text}``."""
    if isinstance(frame, bytes):
        return {"_raw": frame.decode("utf-8", "replace"), "_binary": True}
    try:
        value = json.loads(frame)
    except ValueError:
        return {"_raw": frame}
    return value if isinstance(value, dict) else {"_raw": frame}


def _positive_int(channel: Channel, name: str, value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RequestError(
            2402,
            f"Param '{name}' must be a positive integer for channel '{channel.name}', "
            f"got {json.dumps(value)}.",
        )
    return value


def _address(channel: Channel, name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RequestError(
            2402,
            f"Param '{name}' must hold non-empty address strings for channel "
            f"'{channel.name}', got {json.dumps(value)}.",
        )
    text: str = value.strip()
    return text.lower() if _EVM_HEX.fullmatch(text) else text


def split_params(channel: Channel, params: Any) -> list[dict[str, Any]]:
    """Validate subscribe params and return one normalized dict per subscription.

    :raises RequestError: 2201 if ``params`` is not an object, 2401 for a missing param,
        2402 for an invalid or unknown one.
    """
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise RequestError(2201, f"Field 'params' must be an object, got {json.dumps(params)}.")
    for name in params:
        if name not in channel.params:
            raise RequestError(
                2402,
                f"Param '{name}' is not valid for channel '{channel.name}'; "
                f"it takes {', '.join(channel.params)}.",
            )
    for name in channel.params:
        if params.get(name) is None:
            raise RequestError(2401, f"Param '{name}' is required for channel '{channel.name}'.")
    scalars: dict[str, Any] = {}
    for name in channel.scalar_params:
        value = params[name]
        if name == "interval":
            allowed = channel.intervals or ()
            if value not in allowed:
                raise RequestError(
                    2402,
                    f"Param 'interval' must be one of {', '.join(allowed)} for channel "
                    f"'{channel.name}', got {json.dumps(value)}.",
                )
            scalars[name] = value
        else:
            scalars[name] = _positive_int(channel, name, value)
    raw = params[channel.list_param]
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise RequestError(2402, f"Param '{channel.list_param}' must not be an empty array.")
    convert = _positive_int if channel.list_is_int else _address
    out: list[dict[str, Any]] = []
    for item in items:
        one = {**scalars, channel.list_param: convert(channel, channel.list_param, item)}
        if one not in out:
            out.append(one)
    return out


def _ack(
    request_id: object,
    channel: str | None,
    sub_count: int,
    sub_limit: int,
    *,
    duplicate: bool = False,
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "ack", "code": 0, "msg": "ok"}
    if channel is not None:
        frame["channel"] = channel
    frame["sub_count"] = sub_count
    frame["sub_limit"] = sub_limit
    if duplicate:
        frame["duplicate"] = True
    return _with_id(frame, request_id)


def _channel_of(request: dict[str, Any], method: str) -> Channel:
    if "channel" not in request or request["channel"] is None:
        raise RequestError(2204, f"Field 'channel' is required for method '{method}'.")
    name = request["channel"]
    if not isinstance(name, str):
        raise RequestError(2201, f"Field 'channel' must be a string, got {json.dumps(name)}.")
    row = CHANNELS.get(name)
    if row is None:
        raise RequestError(
            2301, f"Channel '{name}' does not exist; channels are {', '.join(CHANNELS)}."
        )
    return row


def _decode(frame: str | bytes, max_bytes: int) -> dict[str, Any]:
    size = len(frame) if isinstance(frame, bytes) else len(frame.encode("utf-8", "replace"))
    if size > max_bytes:
        raise RequestError(2203, f"Message is {size} bytes; the limit is {max_bytes} bytes.")
    if isinstance(frame, bytes):
        raise RequestError(2201, "Requests must be JSON text frames, got a binary frame.")
    try:
        request = json.loads(frame)
    except ValueError as exc:
        raise RequestError(2201, f"Frame is not valid JSON: {exc}.") from None
    if not isinstance(request, dict):
        raise RequestError(2201, f"A request must be a JSON object, got {type(request).__name__}.")
    return request


def _answer(
    request: dict[str, Any],
    request_id: object,
    subs: Collection[SubKey],
    sub_limit: int,
    take_failure: Callable[[], tuple[int, str | None] | None],
) -> Outcome:
    method = request.get("method")
    if method is None:
        raise RequestError(2204, "Field 'method' is required.")
    if not isinstance(method, str):
        raise RequestError(2201, f"Field 'method' must be a string, got {json.dumps(method)}.")
    if method not in _METHODS:
        raise RequestError(2202, f"Method '{method}' is unknown; use one of {', '.join(_METHODS)}.")
    if method == "ping":
        return Outcome(_with_id({"type": "pong", "code": 0, "ts": now_ms()}, request_id))
    if method == "unsubscribe_all":
        return Outcome(_ack(request_id, None, 0, sub_limit), removed=tuple(subs))
    if method == "subscribe":
        failure = take_failure()
        if failure is not None:
            raise RequestError(*failure)
    row = _channel_of(request, method)
    params = request.get("params")
    if method == "unsubscribe" and not params:
        gone = tuple(key for key in subs if key[0] == row.name)
        return Outcome(_ack(request_id, row.name, len(subs) - len(gone), sub_limit), removed=gone)
    keys = [sub_key(row.name, one) for one in split_params(row, params)]
    if method == "unsubscribe":
        gone = tuple(key for key in keys if key in subs)
        return Outcome(_ack(request_id, row.name, len(subs) - len(gone), sub_limit), removed=gone)
    new = tuple(key for key in keys if key not in subs)
    if len(subs) + len(new) > sub_limit:
        raise RequestError(
            2303,
            f"This subscribe adds {len(new)} subscriptions to the {len(subs)} of this "
            f"connection; the limit is {sub_limit} per connection.",
        )
    ack = _ack(request_id, row.name, len(subs) + len(new), sub_limit, duplicate=not new)
    return Outcome(ack, added=new)


def respond(
    frame: str | bytes,
    subs: Collection[SubKey],
    *,
    sub_limit: int,
    max_bytes: int,
    take_failure: Callable[[], tuple[int, str | None] | None] = lambda: None,
) -> Outcome:
    """Answer one client frame.

    :param frame: the frame as received (text or binary).
    :param subs: the connection's current subscriptions; not modified.
    :param sub_limit: the most subscriptions one connection may hold.
    :param max_bytes: the largest request accepted, in UTF-8 bytes.
    :param take_failure: called once per subscribe request; returns ``(error_code,
        detail)`` to refuse it with (a fault injected by a test), or ``None``.
    :returns: the reply and the change to the subscriptions.
    """
    request: dict[str, Any] | None = None
    request_id: object = _NO_ID
    try:
        request = _decode(frame, max_bytes)
        request_id = request.get("id", _NO_ID)
        outcome = _answer(request, request_id, subs, sub_limit, take_failure)
    except RequestError as exc:
        return Outcome(error_frame(exc.code, exc.detail, request_id), request=request)
    return attrs.evolve(outcome, request=request)
