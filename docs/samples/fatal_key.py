"""A rejected key stops the client for good; wait() (and any later call) raises why."""

import cmcsync
from cmcsync.testing import Simulator

with Simulator(api_keys=["good-key"]) as server:
    client = cmcsync.Client(api_key="not-a-key", url=server.url)
    client.start()
    try:
        client.wait(timeout=10)
    except cmcsync.AuthError as exc:
        print(f"stopped: close code {exc.close_code}: {exc}")
    finally:
        client.close()
    print("state:", client.state.value)
