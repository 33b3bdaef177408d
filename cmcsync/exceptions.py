"""Every exception cmcsync raises.

One root, :class:`CmcsyncError`; subclasses also inherit the builtin a caller would
naturally catch, so ``except ValueError`` or ``except TimeoutError`` keep working::

    CmcsyncError
    ├── ConfigError (ValueError)          bad input from the user, raised before anything is sent
    ├── ClientClosedError (RuntimeError)  the client was closed, or used in a forked child
    ├── CmcsyncTimeoutError (TimeoutError)
    │                                     an ack, a connection or an event did not come in time
    ├── ProtocolError                     the server sent something cmcsync cannot use
    │   └── DecodeError                   a data payload that does not fit its channel's event
    ├── ServerError                       the server answered a request with an error envelope
    │   └── SubscriptionError             ... to a subscribe or unsubscribe
    └── ConnectionFailedError (ConnectionError)
        │                                 the connection could not be made or was lost
        ├── AuthError                     key or plan rejected (close 4100/4101/4102, HTTP 401/403)
        └── GaveUpError                   the reconnect budget ran out

Exceptions carry structured fields (``code``, ``category``, ``detail``, ``channel``) so code
can branch on them without parsing messages. No exception ever contains the API key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AuthError",
    "ClientClosedError",
    "CmcsyncError",
    "CmcsyncTimeoutError",
    "ConfigError",
    "ConnectionFailedError",
    "DecodeError",
    "GaveUpError",
    "ProtocolError",
    "ServerError",
    "SubscriptionError",
]


class CmcsyncError(Exception):
    """Root of every exception raised by cmcsync."""


class ConfigError(CmcsyncError, ValueError):
    """A setting or a parameter given by the user is wrong.

    :param message: what is wrong and how to fix it.
    :param param: the name of the offending parameter or setting, when there is one.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class ClientClosedError(CmcsyncError, RuntimeError):
    """The client was closed (or inherited across a fork) and cannot be used."""


class CmcsyncTimeoutError(CmcsyncError, TimeoutError):
    """Something cmcsync waited for did not happen in time."""


class ProtocolError(CmcsyncError):
    """The server sent a frame cmcsync cannot use.

    :param message: what was wrong with it.
    :param kind: a short, stable name for the kind of problem (``"not_json"``, ``"binary"``,
        ``"unknown_type"``, ``"unknown_channel"``, ``"missing_field"``, ``"undecodable"``,
        ``"too_large"``, ``"too_deep"``...),
        used as the key of the malformed-frame counters in :meth:`cmcsync.Client.stats`.
    """

    def __init__(self, message: str, *, kind: str = "malformed") -> None:
        super().__init__(message)
        self.kind = kind


class DecodeError(ProtocolError):
    """A ``data`` payload could not be decoded into its channel's event class."""

    def __init__(
        self, message: str, *, channel: str | None = None, kind: str = "undecodable"
    ) -> None:
        super().__init__(message, kind=kind)
        self.channel = channel


class ServerError(CmcsyncError):
    """The server answered a request with an ``error`` envelope.

    The fields are the server's own, from the envelope's ``status`` object.

    :param code: ``error_code`` as an integer (the server may send a string).
    :param category: ``AUTH``, ``PROTOCOL`` or ``SERVER``.
    :param message: ``error_message``, the fixed text for the code.
    :param detail: ``error_detail``, context such as the offending field; may be ``None``.
    """

    def __init__(
        self,
        code: int | None,
        category: str | None,
        message: str | None,
        detail: str | None = None,
    ) -> None:
        self.code = code
        self.category = category
        self.error_message = message
        self.detail = detail
        text = f"server error {code} ({category}): {message}"
        if detail:
            text += f" {detail}"
        super().__init__(text)

    # The names used by the CMC error envelope, for callers who think in wire terms.
    @property
    def error_code(self) -> int | None:
        return self.code

    @property
    def error_detail(self) -> str | None:
        return self.detail


class SubscriptionError(ServerError):
    """The server refused a subscribe or unsubscribe request.

    :param channel: the channel of the refused request.
    :param params: the params of the refused request, as sent.
    """

    def __init__(
        self,
        code: int | None,
        category: str | None,
        message: str | None,
        detail: str | None = None,
        *,
        channel: str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(code, category, message, detail)
        self.channel = channel
        self.params = dict(params) if params else {}
        if channel:
            self.args = (f"{channel}: {self.args[0]}",)


class ConnectionFailedError(CmcsyncError, ConnectionError):
    """The connection could not be made, or was closed by the server.

    :param message: what happened.
    :param close_code: the WebSocket close code, when the server closed the socket.
    :param http_status: the HTTP status, when the server refused the handshake.
    """

    def __init__(
        self,
        message: str,
        *,
        close_code: int | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.close_code = close_code
        self.http_status = http_status


class AuthError(ConnectionFailedError):
    """The server rejected the API key or its plan. Fatal: cmcsync does not retry."""


class GaveUpError(ConnectionFailedError):
    """The client stopped reconnecting because its retry budget ran out."""
