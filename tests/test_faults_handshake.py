"""Fault matrix, part 3: the way in. HTTP refusals, DNS, TLS and an HTTP CONNECT proxy.

TLS certificates are made by the test (trustme) and served by a TLS-terminating relay in
front of the simulator; the proxy is a real one on 127.0.0.1; name resolution is replaced by
a stand-in, so no lookup ever leaves the machine.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

import cmcsync
from cmcsync import _protocol
from cmcsync.testing import EventRecorder, Simulator
from tests._proxy import (
    ConnectProxy,
    Relay,
    failure_reasons,
    subscribe_mix,
    wait_flowing,
    wait_replayed,
)
from tests.conftest import KEY, make_client

FAST = cmcsync.Backoff(base=0.01, cap=0.05, long_base=0.3)


# --- HTTP statuses on the handshake ----------------------------------------------------------


@pytest.mark.parametrize("status", sorted(_protocol.FATAL_HTTP_STATUSES))
def test_fatal_status_on_a_reconnect_stops_the_client(
    status: int, sim: Simulator, recorder: EventRecorder
) -> None:
    client = make_client(sim.url, recorder, backoff=FAST)
    try:
        subscribe_mix(client)
        sim.reject_handshakes(status, count=3)
        sim.close_all(1012, "restart")
        with pytest.raises(cmcsync.AuthError) as info:
            client.wait(5)
        assert info.value.http_status == status
        assert _protocol.auth_hint(status) in str(info.value)
        with pytest.raises(TimeoutError):
            sim.wait_for(lambda: len(sim.handshakes) > 2, timeout=0.5)
        assert [h.status for h in sim.handshakes] == [101, status]
    finally:
        client.close()


@pytest.mark.parametrize("status", [429, 500])
def test_retryable_status_on_a_reconnect_is_retried_and_replayed(
    status: int, sim: Simulator, recorder: EventRecorder
) -> None:
    client = make_client(sim.url, recorder, backoff=FAST)
    try:
        subscribe_mix(client)
        first = sim.connections()[0]
        sim.reject_handshakes(status, count=2)
        sim.close_all(1012, "restart")
        closed_at = time.monotonic()
        sim.wait_for(lambda: first.closed)
        wait_replayed(sim, client)
        elapsed = time.monotonic() - closed_at
        wait_flowing(recorder)
        assert [h.status for h in sim.handshakes] == [101, status, status, 101]
        assert client.stats()["failed_attempts"] == 2
        refusals = [r for r in failure_reasons(recorder) if f"HTTP {status}" in r]
        assert len(refusals) == 2
    finally:
        client.close()
    if status in _protocol.LONG_BACKOFF_HTTP_STATUSES:
        # Two long waits of at least long_base / 2 = 0.15 s each.
        assert elapsed >= 0.3 - 0.05


# --- DNS -------------------------------------------------------------------------------------

HOST = "stream.cmc.invalid"


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Name resolution where ``HOST`` fails while ``state["fail"]`` says so, else is 127.0.0.1.

    Every other name but loopback ones is an error: no lookup may leave the machine.
    """
    real = socket.getaddrinfo
    state: dict[str, Any] = {"fail": lambda: True, "lookups": 0}

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == HOST:
            state["lookups"] += 1
            if state["fail"]():
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return real("127.0.0.1", port, *args, **kwargs)
        if host not in (None, "127.0.0.1", "localhost", "::1"):
            raise socket.gaierror(socket.EAI_NONAME, f"the test resolver refuses {host!r}")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return state


def test_dns_failure_is_retried_and_reported_until_the_name_resolves(
    resolver: dict[str, Any], sim: Simulator, recorder: EventRecorder
) -> None:
    failures = iter(range(3))
    resolver["fail"] = lambda: next(failures, None) is not None
    client = make_client(f"ws://{HOST}:{sim.port}/v1", recorder, backoff=FAST, allow_insecure=True)
    try:
        subscribe_mix(client, wait=False)
        wait_replayed(sim, client)
    finally:
        client.close()
    reasons = failure_reasons(recorder)
    target = f"ws://{HOST}:{sim.port}/v1"
    expected = f"cannot resolve the host of {target}: [Errno {socket.EAI_NONAME}] Name or service"
    assert sum(expected in r for r in reasons) == 3, reasons
    assert client.stats()["failed_attempts"] == 3
    assert resolver["lookups"] == 4


def test_dns_failure_gives_up_under_max_attempts(
    resolver: dict[str, Any], recorder: EventRecorder
) -> None:
    client = make_client(
        f"wss://{HOST}/v1",
        recorder,
        backoff=cmcsync.Backoff(base=0.01, cap=0.02, max_attempts=3),
    )
    try:
        client.start()
        with pytest.raises(cmcsync.GaveUpError, match="gave up after 3 failed attempts") as info:
            client.wait(5)
        assert f"cannot resolve the host of wss://{HOST}/v1" in str(info.value)
        assert isinstance(info.value, ConnectionError)
    finally:
        client.close()
    assert resolver["lookups"] == 3


# --- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


def tls_session(
    cert: trustme.LeafCert, recorder: EventRecorder, **client_kwargs: Any
) -> Callable[[Callable[[Simulator, Relay, cmcsync.Client], None]], None]:
    """Run ``body(sim, relay, client)`` with the simulator behind a TLS relay using ``cert``."""

    def run(body: Callable[[Simulator, Relay, cmcsync.Client], None]) -> None:
        with Simulator(api_keys=(KEY,), speed=200, seed=31) as sim:
            with Relay(sim.port, tls=server_context(cert)) as relay:
                client = make_client(f"wss://127.0.0.1:{relay.port}/v1", recorder, **client_kwargs)
                try:
                    body(sim, relay, client)
                finally:
                    client.close()

    return run


def test_tls_with_the_ca_passed_in_sslopt_works(
    ca: trustme.CA, ca_file: str, recorder: EventRecorder
) -> None:
    def body(sim: Simulator, relay: Relay, client: cmcsync.Client) -> None:
        subscribe_mix(client)
        wait_flowing(recorder)
        first = sim.connections()[0]
        sim.close_all(1012, "restart")
        sim.wait_for(lambda: first.closed)
        wait_replayed(sim, client)
        assert relay.tls_accepted == 2
        assert relay.tls_failures == []

    tls_session(ca.issue_cert("127.0.0.1"), recorder, sslopt={"ca_certs": ca_file})(body)


def _refused(
    verify_message: str, recorder: EventRecorder, *, hint: bool = False
) -> Callable[..., None]:
    def body(sim: Simulator, relay: Relay, client: cmcsync.Client) -> None:
        client.start()
        with pytest.raises(cmcsync.GaveUpError) as info:
            client.wait(5)
        target = f"wss://127.0.0.1:{relay.port}/v1"
        assert f"TLS certificate of {target} not accepted: {verify_message}" in str(info.value)
        assert ("sslopt={'ca_certs'" in str(info.value)) is hint, "what to do, when it helps"
        # wait() returns as soon as the client stops; the hooks may still be on their way.
        recorder.wait_for(lambda: len(failure_reasons(recorder)) >= 2)
        reasons = failure_reasons(recorder)
        assert reasons[0].endswith("; retrying") and not reasons[1].endswith("; retrying")
        assert len(reasons) == 2 and all(verify_message in r for r in reasons), reasons
        # The relay's side of the last refused handshake may lag the client's by a moment.
        deadline = time.monotonic() + 2
        while len(relay.tls_failures) < 2 and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        assert len(relay.tls_failures) == 2
        assert sim.handshakes == [], "nothing, the key least of all, went over a bad TLS"

    return body


GIVE_UP = cmcsync.Backoff(base=0.01, cap=0.02, max_attempts=2)


def test_tls_unknown_ca_is_refused_by_default(recorder: EventRecorder) -> None:
    stranger = trustme.CA()
    cert = stranger.issue_cert("127.0.0.1")
    tls_session(cert, recorder, backoff=GIVE_UP)(
        _refused("unable to get local issuer certificate", recorder, hint=True)
    )


def test_tls_unknown_ca_is_refused_even_with_another_ca_given(
    ca_file: str, recorder: EventRecorder
) -> None:
    cert = trustme.CA().issue_cert("127.0.0.1")
    tls_session(cert, recorder, backoff=GIVE_UP, sslopt={"ca_certs": ca_file})(
        _refused("unable to get local issuer certificate", recorder, hint=True)
    )


def test_tls_expired_certificate_is_refused(
    ca: trustme.CA, ca_file: str, recorder: EventRecorder
) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = ca.issue_cert(
        "127.0.0.1",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    tls_session(cert, recorder, backoff=GIVE_UP, sslopt={"ca_certs": ca_file})(
        _refused("certificate has expired", recorder)
    )


def test_tls_certificate_for_another_host_is_refused(
    ca: trustme.CA, ca_file: str, recorder: EventRecorder
) -> None:
    cert = ca.issue_cert("stream.example.test")
    tls_session(cert, recorder, backoff=GIVE_UP, sslopt={"ca_certs": ca_file})(
        _refused("IP address mismatch", recorder)
    )


def test_tls_failure_is_retried_until_the_certificate_is_fixed(
    ca: trustme.CA, ca_file: str, recorder: EventRecorder
) -> None:
    good = server_context(ca.issue_cert("127.0.0.1"))
    with Simulator(api_keys=(KEY,), speed=200, seed=32) as sim:
        with Relay(sim.port, tls=server_context(trustme.CA().issue_cert("127.0.0.1"))) as relay:
            client = make_client(
                f"wss://127.0.0.1:{relay.port}/v1",
                recorder,
                backoff=FAST,
                sslopt={"ca_certs": ca_file},
            )
            try:
                subscribe_mix(client, wait=False)
                recorder.wait_for(lambda: len(relay.tls_failures) >= 2)
                relay.tls = good
                wait_replayed(sim, client)
            finally:
                client.close()


def test_a_missing_ca_file_is_a_config_error_not_retried(tmp_path: Path) -> None:
    with Simulator(api_keys=(KEY,), feeds=False) as sim:
        with Relay(sim.port, tls=server_context(trustme.CA().issue_cert("127.0.0.1"))) as relay:
            client = make_client(
                f"wss://127.0.0.1:{relay.port}/v1",
                backoff=FAST,
                sslopt={"ca_certs": str(tmp_path / "missing.pem")},
            )
            try:
                client.start()
                with pytest.raises(cmcsync.ConfigError, match="bad TLS settings") as info:
                    client.wait(5)
                assert info.value.param == "sslopt"
            finally:
                client.close()


def test_verification_can_be_turned_off_explicitly(recorder: EventRecorder) -> None:
    cert = trustme.CA().issue_cert("stream.example.test")
    tls_session(cert, recorder, sslopt={"cert_reqs": ssl.CERT_NONE})(
        lambda sim, relay, client: subscribe_mix(client)
    )


# --- HTTP CONNECT proxy ----------------------------------------------------------------------


@pytest.fixture
def no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """websocket-client honours *_proxy and no_proxy variables; the tests set their own."""
    for name in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_env_proxy")
def test_traffic_goes_through_the_proxy_and_so_does_the_replay(
    sim: Simulator, recorder: EventRecorder
) -> None:
    with ConnectProxy() as proxy:
        client = make_client(sim.url, recorder, proxy=f"http://127.0.0.1:{proxy.port}")
        try:
            subscribe_mix(client)
            wait_flowing(recorder)
            first = sim.connections()[0]
            sim.close_all(1012, "restart")
            sim.wait_for(lambda: first.closed)
            wait_replayed(sim, client)
        finally:
            client.close()
    assert proxy.tunnels == [("127.0.0.1", sim.port)] * 2
    assert len(sim.handshakes) == 2, "every handshake came through the tunnels"
    assert all(KEY not in request for request in proxy.requests)


@pytest.mark.usefixtures("no_env_proxy")
def test_proxy_credentials_are_sent_and_a_refusal_is_clear(
    sim: Simulator, recorder: EventRecorder
) -> None:
    with ConnectProxy(credentials=("alice", "s3cret-pw")) as proxy:
        good = make_client(sim.url, proxy=f"http://alice:s3cret-pw@127.0.0.1:{proxy.port}")
        bad = make_client(
            sim.url,
            recorder,
            proxy=f"http://alice:wrong-pw@127.0.0.1:{proxy.port}",
            backoff=cmcsync.Backoff(base=0.01, cap=0.02, max_attempts=2),
        )
        try:
            good.subscribe("market@crypto_latest_price", crypto_ids=[1])
            bad.start()
            with pytest.raises(cmcsync.GaveUpError) as info:
                bad.wait(5)
        finally:
            good.close()
            bad.close()
    assert proxy.statuses.count(200) == 1 and proxy.statuses.count(407) == 2
    text = str(info.value)
    assert f"through the proxy 127.0.0.1:{proxy.port}" in text and "407" in text
    assert "wrong-pw" not in text and "alice" not in text


@pytest.mark.usefixtures("no_env_proxy")
def test_tls_through_the_proxy_keeps_the_key_inside_the_tunnel(
    ca: trustme.CA, ca_file: str, recorder: EventRecorder
) -> None:
    with Simulator(api_keys=(KEY,), speed=200, seed=33) as sim:
        with Relay(sim.port, tls=server_context(ca.issue_cert("127.0.0.1"))) as relay:
            with ConnectProxy() as proxy:
                client = make_client(
                    f"wss://127.0.0.1:{relay.port}/v1",
                    recorder,
                    sslopt={"ca_certs": ca_file},
                    proxy=f"http://127.0.0.1:{proxy.port}",
                )
                try:
                    subscribe_mix(client)
                    wait_flowing(recorder)
                finally:
                    client.close()
    assert proxy.tunnels == [("127.0.0.1", relay.port)]
    assert relay.tls_accepted == 1
    assert all(KEY not in request for request in proxy.requests)
