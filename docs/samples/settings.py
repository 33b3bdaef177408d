"""Settings are immutable value objects, checked when they are built."""

import cmcsync

# settings: start
client = cmcsync.Client(
    api_key="my-key",
    backoff=cmcsync.Backoff(base=1.0, cap=60.0, max_attempts=20),
    timeouts=cmcsync.Timeouts(connect=5.0, ack=15.0, pong=5.0),
    dispatch=cmcsync.DispatchConfig(queue_size=50_000, overflow="drop_oldest"),
)
# settings: end
print(client)

try:
    cmcsync.Timeouts(ack=0)
except ValueError as exc:
    print("refused:", exc)
