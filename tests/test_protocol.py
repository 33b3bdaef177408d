"""Wire vocabulary: request builders and envelope parsing."""

from __future__ import annotations

import json

import pytest

from cmcsync import _protocol
from cmcsync.exceptions import ProtocolError


def test_requests_are_the_documented_shapes() -> None:
    assert json.loads(_protocol.ping_request(1)) == {"id": 1, "method": "ping"}
    assert json.loads(_protocol.unsubscribe_all_request(4)) == {
        "id": 4,
        "method": "unsubscribe_all",
    }
    assert json.loads(_protocol.unsubscribe_request(3, "onchain@kline")) == {
        "id": 3,
        "method": "unsubscribe",
        "channel": "onchain@kline",
    }
    sub = json.loads(
        _protocol.subscribe_request(1, "market@crypto_latest_price", {"crypto_ids": [1, 1027]})
    )
    assert sub == {
        "id": 1,
        "method": "subscribe",
        "channel": "market@crypto_latest_price",
        "params": {"crypto_ids": [1, 1027]},
    }


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("nope", "not_json"),
        ("[1]", "not_object"),
        ('{"id": 1}', "missing_field"),
        ("{", "not_json"),
    ],
)
def test_bad_frames_raise_protocol_errors_with_a_kind(text: str, kind: str) -> None:
    with pytest.raises(ProtocolError) as info:
        _protocol.parse_frame(text)
    assert info.value.kind == kind


def test_server_error_reads_the_documented_envelope() -> None:
    error = _protocol.server_error(
        {
            "type": "error",
            "id": 1,
            "status": {
                "timestamp": "2026-05-21T01:57:09.125Z",
                "error_code": "2401",
                "category": "PROTOCOL",
                "error_message": "Missing required param for channel.",
                "error_detail": (
                    "Param 'crypto_ids' is required for channel 'market@crypto_latest_price'."
                ),
            },
        }
    )
    assert error.code == 2401 and error.error_code == 2401
    assert error.category == "PROTOCOL"
    assert error.error_message == "Missing required param for channel."
    assert "crypto_ids" in (error.detail or "")


def test_server_error_fills_in_the_table_when_fields_are_missing() -> None:
    error = _protocol.server_error({"type": "error", "status": {"error_code": 2303}})
    assert error.category == "PROTOCOL"
    assert error.error_message == "Subscription limit reached."
    assert _protocol.server_error({"type": "error"}).code is None


def test_describe_close_uses_cmc_reason_texts() -> None:
    assert _protocol.describe_close(4004) == "close 4004 (Connection limit)"
    assert _protocol.describe_close(None) == "connection lost without a close frame"
    assert _protocol.describe_close(1000, "bye") == "close 1000 (Normal close): bye"
