"""``cmcsync doctor``: a verdict per check and what to do, against local servers only."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cmcsync.cli._checks import OK, PROBLEM, WARNING, check_key, check_proxy
from cmcsync.cli._doctor import websocket_checks
from cmcsync.testing import Simulator
from tests.conftest import KEY
from tests.test_cli import assert_no_traceback, run_cli

CHECKS = ("API key", "URL", "proxy", "DNS", "TCP", "TLS", "handshake", "welcome", "ping")


def verdicts(stdout: str) -> dict[str, str]:
    """Check label -> verdict, from the report's lines."""
    found = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in (OK, WARNING, PROBLEM, "skipped"):
            label = "API key" if parts[1] == "API" else parts[1]
            found[label] = parts[0]
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_all_good_against_the_simulator(sim: Simulator) -> None:
    result = run_cli("doctor", "--url", sim.url, "--api-key", KEY)
    assert result.returncode == 0, result.stdout + result.stderr
    found = verdicts(result.stdout)
    assert list(found) == list(CHECKS)
    assert {v for k, v in found.items() if k != "TLS"} == {OK}
    assert "ping_interval_ms=10000" in result.stdout
    assert "pong in " in result.stdout
    assert "all good" in result.stdout
    assert KEY not in result.stdout + result.stderr


def test_the_embedded_simulator_works_offline() -> None:
    result = run_cli("doctor", "--simulator")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(embedded simulator)" in result.stdout
    assert verdicts(result.stdout)["ping"] == OK


def test_a_wrong_key_is_a_problem_with_advice(sim: Simulator) -> None:
    wrong = "0b5c1f27-9f5e-4d7e-8a55-7c1a6a0f3e99"
    result = run_cli("doctor", "--url", sim.url, "--api-key", wrong)
    assert result.returncode == 1
    found = verdicts(result.stdout)
    assert found["handshake"] == PROBLEM and found["TCP"] == OK
    assert found["welcome"] == found["ping"] == "skipped"
    assert "4100" in result.stdout and "→ copy the key again" in result.stdout
    assert wrong not in result.stdout + result.stderr
    assert "1 problem(s)" in result.stdout


def test_no_key_still_checks_the_network(sim: Simulator) -> None:
    result = run_cli("doctor", "--url", sim.url)
    assert result.returncode == 1
    found = verdicts(result.stdout)
    assert found["API key"] == PROBLEM and found["TCP"] == OK
    assert found["handshake"] == "skipped"
    assert "export CMC_PRO_API_KEY" in result.stdout


def test_nothing_listening_is_a_tcp_problem() -> None:
    result = run_cli("doctor", "--url", f"ws://127.0.0.1:{free_port()}/v1", "--api-key", KEY)
    assert result.returncode == 1
    assert verdicts(result.stdout)["TCP"] == PROBLEM
    assert "nothing listens there" in result.stdout and "cmcsync simulate" in result.stdout


def test_a_proxy_that_catches_loopback_traffic_is_flagged(sim: Simulator) -> None:
    proxy = f"http://127.0.0.1:{free_port()}"
    result = run_cli("doctor", "--url", sim.url, "--api-key", KEY, env={"HTTP_PROXY": proxy})
    assert verdicts(result.stdout)["proxy"] == WARNING
    assert "export NO_PROXY=127.0.0.1,localhost" in result.stdout
    assert result.returncode == 1, "the proxy is not there: the TCP check fails"
    exempt = run_cli(
        "doctor",
        "--url",
        sim.url,
        "--api-key",
        KEY,
        env={"HTTP_PROXY": proxy, "NO_PROXY": "127.0.0.1"},
    )
    assert exempt.returncode == 0, exempt.stdout
    assert "NO_PROXY exempts 127.0.0.1" in exempt.stdout


def test_simulator_and_url_together_is_a_usage_error() -> None:
    result = run_cli("doctor", "--simulator", "--url", "ws://127.0.0.1:1/v1")
    assert result.returncode == 2
    assert "--simulator brings its own URL and key" in result.stderr


@pytest.fixture
def untrusted_tls(tmp_path: Path) -> Iterator[str]:
    """A TLS server on 127.0.0.1 with a self-signed certificate; yields its wss:// URL."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(15)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        # The doctor refuses the certificate, as it should: the handshake fails here.
        with conn, contextlib.suppress(ssl.SSLError, OSError):
            context.wrap_socket(conn, server_side=True).close()

    thread = threading.Thread(target=serve, name="test-tls-server")
    thread.start()
    try:
        yield f"wss://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        listener.close()
        thread.join(15)


def test_an_untrusted_certificate_is_a_tls_problem(untrusted_tls: str) -> None:
    result = run_cli("doctor", "--url", untrusted_tls, "--api-key", KEY, "--timeout", "3")
    assert result.returncode == 1, result.stdout
    found = verdicts(result.stdout)
    assert found["TCP"] == OK and found["TLS"] == PROBLEM
    assert "not trusted" in result.stdout and "SSL_CERT_FILE" in result.stdout
    assert found["handshake"] == "skipped"
    assert_no_traceback(result.stderr)


# --- the checks themselves, in process --------------------------------------------------------


def test_the_ping_check_gives_the_round_trip_and_the_clock_offset(sim: Simulator) -> None:
    *_, ping = websocket_checks(sim.url, KEY, 5.0)
    assert (ping.verdict, ping.check) == (OK, "ping")
    assert re.fullmatch(
        r"pong in \d+ ms; this machine's clock is \d+\.\d s (ahead of|behind) the server's",
        ping.detail,
    ), ping.detail


def test_no_pong_is_a_ping_problem(sim: Simulator) -> None:
    checks = websocket_checks(sim.url, KEY, 0.5)
    try:
        assert [next(checks).check, next(checks).check] == ["handshake", "welcome"]
        sim.silence(True)
        ping = next(checks)
    finally:
        sim.silence(False)
        checks.close()
    assert (ping.verdict, ping.check) == (PROBLEM, "ping")
    assert ping.detail == "no pong within 0.5 s"
    assert "proxy or firewall" in ping.advice


def test_the_key_is_never_shown() -> None:
    key = "b54bcf4d-1bca-4e8e-9a24-22ff2c3d462c"
    finding = check_key(key, "CMC_PRO_API_KEY", "wss://pro-stream.coinmarketcap.com/v1")
    assert finding.verdict == OK and key not in finding.detail
    odd = check_key("'" + key + "'", "--api-key", "wss://pro-stream.coinmarketcap.com/v1")
    assert odd.verdict == WARNING and "not shaped like a CMC key" in odd.detail
    assert key not in odd.detail


@pytest.mark.parametrize(
    ("env", "verdict", "detail"),
    [
        ({}, OK, "none, direct connection"),
        (
            {"HTTPS_PROXY": "http://user:pw@proxy.example:3128"},
            OK,
            "through http://user:***@proxy.example:3128 (from HTTPS_PROXY)",
        ),
        ({"https_proxy": "http://p:1", "NO_PROXY": ".coinmarketcap.com"}, OK, "NO_PROXY exempts"),
        ({"HTTPS_PROXY": "socks5://p:1080"}, PROBLEM, "HTTP proxies only"),
        ({"ALL_PROXY": "http://p:1"}, OK, "ALL_PROXY is set but not used"),
    ],
)
def test_proxy_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], verdict: str, detail: str
) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    finding, _route = check_proxy(urlsplit("wss://pro-stream.coinmarketcap.com/v1"), None)
    assert finding.verdict == verdict
    assert detail in finding.detail
    assert "pw" not in finding.detail
