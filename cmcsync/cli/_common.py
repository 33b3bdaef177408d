"""What the subcommands share: exit codes, error output, mapping errors to flags."""

from __future__ import annotations

import sys
from typing import Any

from cmcsync.exceptions import AuthError, CmcsyncError, GaveUpError, SubscriptionError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_GAVE_UP = 4
EXIT_REJECTED = 5

#: Subscribe params and the flags that set them.
PARAM_FLAGS = {
    "crypto_ids": "--crypto-ids",
    "platform_id": "--platform-id",
    "address": "--address",
    "pool_address": "--pool-address",
    "wallet_address": "--wallet-address",
    "interval": "--interval",
    "api_key": "--api-key",
    "url": "--url",
}


def say(*parts: Any) -> None:
    """Write a progress or status line to stderr (stdout carries only data)."""
    print(*parts, file=sys.stderr, flush=True)


def exit_code_for(error: BaseException) -> int:
    """The documented exit code for an error that ended a command."""
    if isinstance(error, AuthError):
        return EXIT_AUTH
    if isinstance(error, GaveUpError):
        return EXIT_GAVE_UP
    if isinstance(error, SubscriptionError):
        return EXIT_REJECTED
    if isinstance(error, CmcsyncError):
        return EXIT_GAVE_UP
    return 1


def advice_for(error: BaseException) -> str:
    """One line that tells the user what to do about an error."""
    if isinstance(error, AuthError):
        return "check the key (--api-key or CMC_PRO_API_KEY) and that its plan includes the WebSocket API"
    if isinstance(error, GaveUpError):
        return "check --url, your network and proxy settings; `cmcsync doctor` tests them"
    if isinstance(error, SubscriptionError):
        return "fix the channel params; the server's message above says which"
    return ""
