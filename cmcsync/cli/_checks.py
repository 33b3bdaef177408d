"""The network checks of ``cmcsync doctor``: key, URL, proxy, DNS, TCP and TLS.

Each check returns a :class:`Finding`: a verdict, what was found, and what to do when it is
not ``ok``. They use the standard library only, the way the client's transport does (the
same proxy variables, the same certificate store), so what passes here is what the client
meets.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import attrs

from cmcsync import _protocol
from cmcsync._connection import check_url, is_loopback, redact_url
from cmcsync.exceptions import ConfigError

__all__ = [
    "OK",
    "PROBLEM",
    "SKIPPED",
    "WARNING",
    "Finding",
    "Route",
    "check_dns",
    "check_key",
    "check_proxy",
    "check_tcp",
    "check_tls",
    "check_url_text",
]

OK, WARNING, PROBLEM, SKIPPED = "ok", "warning", "problem", "skipped"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CMC_HOST = urlsplit(_protocol.DEFAULT_URL).hostname


@attrs.frozen
class Finding:
    """The outcome of one check.

    :param verdict: ``ok``, ``warning``, ``problem`` or ``skipped``.
    :param check: what was checked, a short label.
    :param detail: what was found.
    :param advice: what to do, for anything but ``ok``.
    """

    verdict: str
    check: str
    detail: str
    advice: str = ""


@attrs.frozen
class Route:
    """Where the first hop goes: the endpoint itself, or an HTTP proxy.

    :param host: the host to resolve and connect to.
    :param port: its port.
    :param proxy: the proxy URL (credentials masked) when the hop is a proxy.
    :param auth: ``(user, password)`` for the proxy, when its URL has them.
    """

    host: str
    port: int
    proxy: str | None = None
    auth: tuple[str, str] | None = None


def check_key(key: str | None, source: str, url: str) -> Finding:
    """Is a key there, and does it look like a CMC key? Never shows it."""
    if key is None:
        return Finding(
            PROBLEM,
            "API key",
            "not set",
            f"pass --api-key KEY or export {_protocol.API_KEY_ENV}=...; keys are on "
            "https://pro.coinmarketcap.com/account (the WebSocket API needs the Startup plan "
            "or above). Without a key: `cmcsync doctor --simulator`",
        )
    if urlsplit(url).hostname == _CMC_HOST and not _UUID.fullmatch(key):
        return Finding(
            WARNING,
            "API key",
            f"set (from {source}), {len(key)} characters, but not shaped like a CMC key "
            "(36 characters: 8-4-4-4-12 hex digits)",
            "copy the key again from your CMC account page, without quotes or spaces",
        )
    return Finding(OK, "API key", f"set (from {source})")


def check_url_text(url: str, allow_insecure: bool) -> tuple[Finding, SplitResult | None]:
    """Is the URL one the client accepts? Returns the parsed URL when it is."""
    try:
        check_url(url, allow_insecure=allow_insecure)
    except ConfigError as exc:
        advice = (
            "use wss://pro-stream.coinmarketcap.com/v1, or a simulator's ws://127.0.0.1:PORT/v1"
        )
        return Finding(PROBLEM, "URL", str(exc), advice), None
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError as exc:
        return Finding(PROBLEM, "URL", f"bad port: {exc}", "write the port as a number"), None
    host = parts.hostname or ""
    where = f"{host} port {port}, path {parts.path or '/'}"
    if parts.scheme == "wss":
        detail = f"wss:// (TLS) to {where}"
    elif is_loopback(host):
        detail = f"ws:// to this machine, {where} (no TLS: fine for a local simulator)"
    else:
        detail = f"ws:// to {where}: the key travels unencrypted (--allow-insecure)"
        return Finding(WARNING, "URL", detail, "use wss:// for anything but a local test"), parts
    if parts.path.rstrip("/") != "/v1":
        return (
            Finding(
                WARNING,
                "URL",
                detail,
                "CMC's endpoint (and the simulator's) is at path /v1",
            ),
            parts,
        )
    return Finding(OK, "URL", detail), parts


def _env(*names: str) -> tuple[str, str] | None:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return name, value
    return None


def _no_proxy(host: str) -> bool:
    """Whether NO_PROXY exempts ``host``, by the rules the client's transport applies."""
    found = _env("no_proxy", "NO_PROXY")
    if found is None:
        return False
    entries = [e.strip() for e in found[1].replace(" ", "").split(",") if e.strip()]
    if "*" in entries or host in entries:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in entries:
        if address is not None and "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
        elif address is None:
            domain = entry.lstrip(".")
            if host == domain or host.endswith("." + domain):
                return True
    return False


def _mask(url: str) -> str:
    parts = urlsplit(url)
    if parts.password or parts.username:
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return redact_url(url) if "://" in url else url


def check_proxy(parts: SplitResult, flag: str | None) -> tuple[Finding, Route]:
    """Which proxy, if any, the connection goes through; the first hop to test."""
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    direct = Route(host, port)
    names = (
        ("https_proxy", "HTTPS_PROXY") if parts.scheme == "wss" else ("http_proxy", "HTTP_PROXY")
    )
    found = ("--proxy", flag) if flag else _env(*names)
    ignored = _env("all_proxy", "ALL_PROXY")
    if found is None:
        note = ""
        if ignored is not None:
            note = f"; {ignored[0]} is set but not used (only {names[1]} is)"
        return Finding(OK, "proxy", f"none, direct connection{note}"), direct
    name, value = found
    if flag is None and _no_proxy(host):
        return Finding(OK, "proxy", f"{name} is set, but NO_PROXY exempts {host}: direct"), direct
    proxy = urlsplit(value if "://" in value else f"http://{value}")
    shown = _mask(value)
    if proxy.scheme not in ("http", "https") or not proxy.hostname:
        return (
            Finding(
                PROBLEM,
                "proxy",
                f"{name}={shown}: cmcsync tunnels through HTTP proxies only",
                f"point {name} at an HTTP proxy (http://host:port), or unset it",
            ),
            direct,
        )
    auth = (proxy.username, proxy.password or "") if proxy.username else None
    route = Route(proxy.hostname, proxy.port or 8080, proxy=shown, auth=auth)
    if is_loopback(host):
        return (
            Finding(
                WARNING,
                "proxy",
                f"{name}={shown} applies to {host} too: connections to this machine go "
                "through the proxy",
                f"exempt it: export NO_PROXY={host},localhost",
            ),
            route,
        )
    return Finding(OK, "proxy", f"through {shown} (from {name})"), route


def check_dns(route: Route, timeout: float) -> tuple[Finding, list[str]]:
    """Resolve the first hop; returns the addresses found."""
    label = "DNS"
    try:
        ipaddress.ip_address(route.host)
    except ValueError:
        pass
    else:
        return Finding(OK, label, f"{route.host} is an address, nothing to resolve"), [route.host]
    result: list[Any] = []
    failure: list[BaseException] = []

    def resolve() -> None:
        try:
            result.extend(socket.getaddrinfo(route.host, route.port, type=socket.SOCK_STREAM))
        except OSError as exc:
            failure.append(exc)

    started = time.monotonic()
    # getaddrinfo has no timeout of its own; a thread bounds the wait.
    worker = threading.Thread(target=resolve, name="cmcsync-doctor-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    ms = (time.monotonic() - started) * 1000
    what = f"the proxy {route.host}" if route.proxy else route.host
    if worker.is_alive():
        return (
            Finding(
                PROBLEM,
                label,
                f"no answer for {what} within {timeout:g} s",
                "check your network connection and DNS server",
            ),
            [],
        )
    if failure or not result:
        reason = failure[0] if failure else "no address"
        return (
            Finding(
                PROBLEM,
                label,
                f"cannot resolve {what}: {reason}",
                "check the host name in --url, your network connection and DNS server",
            ),
            [],
        )
    addresses = list(dict.fromkeys(str(info[4][0]) for info in result))
    shown = ", ".join(addresses[:3]) + (" ..." if len(addresses) > 3 else "")
    return Finding(OK, label, f"{what} → {shown} ({ms:.0f} ms)"), addresses


def check_tcp(
    route: Route, addresses: list[str], target: tuple[str, int], timeout: float
) -> tuple[Finding, socket.socket | None]:
    """Open TCP to the first hop (and a CONNECT tunnel through a proxy); returns the socket."""
    errors = []
    for address in addresses:
        started = time.monotonic()
        try:
            sock = socket.create_connection((address, route.port), timeout=timeout)
        except OSError as exc:
            errors.append(f"{address}: {_reason(exc)}")
            continue
        ms = (time.monotonic() - started) * 1000
        if route.proxy is None:
            return Finding(OK, "TCP", f"connected to {address}:{route.port} in {ms:.0f} ms"), sock
        problem = _tunnel(sock, route, target, timeout)
        if problem is not None:
            sock.close()
            return problem, None
        detail = f"tunnel to {target[0]}:{target[1]} through {route.proxy} in {ms:.0f} ms"
        return Finding(OK, "TCP", detail), sock
    refused = any("refused" in e for e in errors)
    advice = (
        "nothing listens there: check the port in --url; for a local simulator, is "
        "`cmcsync simulate` running?"
        if refused
        else "a firewall may block the port; try another network, or set HTTPS_PROXY"
    )
    return Finding(PROBLEM, "TCP", "cannot connect: " + "; ".join(errors), advice), None


def _tunnel(
    sock: socket.socket, route: Route, target: tuple[str, int], timeout: float
) -> Finding | None:
    host, port = target
    lines = [f"CONNECT {host}:{port} HTTP/1.1", f"Host: {host}:{port}"]
    if route.auth is not None:
        token = base64.b64encode(":".join(route.auth).encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        answer = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline and len(answer) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    except OSError as exc:
        return Finding(
            PROBLEM,
            "TCP",
            f"the proxy {route.proxy} failed: {_reason(exc)}",
            "check the proxy address and that it is running",
        )
    status = answer.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    if " 200" not in status[:13]:
        advice = "check the proxy settings"
        if " 407" in status[:13]:
            advice = "the proxy wants credentials: http://user:password@host:port"
        return Finding(
            PROBLEM,
            "TCP",
            f"the proxy refused CONNECT: {status or 'no answer'}",
            advice,
        )
    return None


def check_tls(sock: socket.socket, host: str, timeout: float) -> Finding:
    """The TLS handshake and certificate check, with the client transport's trust store."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    bundle = os.environ.get("WEBSOCKET_CLIENT_CA_BUNDLE")
    store = "the system's CA certificates"
    try:
        if bundle and os.path.isfile(bundle):
            context.load_verify_locations(cafile=bundle)
            store = f"WEBSOCKET_CLIENT_CA_BUNDLE={bundle}"
        elif bundle and os.path.isdir(bundle):
            context.load_verify_locations(capath=bundle)
            store = f"WEBSOCKET_CLIENT_CA_BUNDLE={bundle}"
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    except (OSError, ssl.SSLError) as exc:
        return Finding(PROBLEM, "TLS", f"cannot load {store}: {exc}", "fix or unset that path")
    sock.settimeout(timeout)
    started = time.monotonic()
    try:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            ms = (time.monotonic() - started) * 1000
            cert = tls.getpeercert() or {}
            version = tls.version() or "TLS"
    except ssl.SSLCertVerificationError as exc:
        return Finding(
            PROBLEM,
            "TLS",
            f"certificate of {host} not trusted: {exc.verify_message or exc}",
            "check the system clock and CA certificates (Debian: apt install ca-certificates); "
            "behind a TLS-inspecting proxy, point SSL_CERT_FILE or WEBSOCKET_CLIENT_CA_BUNDLE at "
            "its CA bundle",
        )
    except (ssl.SSLError, OSError) as exc:
        return Finding(
            PROBLEM,
            "TLS",
            f"handshake with {host} failed: {_reason(exc)}",
            "is this a TLS endpoint? a plain ws:// server needs a ws:// URL",
        )
    expires = cert.get("notAfter")
    detail = f"{version}, certificate for {host} verified against {store} ({ms:.0f} ms)"
    if isinstance(expires, str):
        left = (ssl.cert_time_to_seconds(expires) - time.time()) / 86400
        detail += f", expires in {left:.0f} days"
        if left < 7:
            return Finding(WARNING, "TLS", detail, "the server's certificate expires soon")
    return Finding(OK, "TLS", detail)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
