"""Load-test a deployed API from outside with Locust (`pip install locust`; not a dependency).

    CCADMIN_API_KEY=cc_... locust -f locustfile.py --host https://api.example.com

Each simulated caller asks `/data` for random user ids the way the message
platform does at send time. Optional: CCADMIN_BENCH_USERS (highest user id,
default 1,000,000) and CCADMIN_BENCH_PATH (default /data, e.g. /v1/promo).
For the numbers in docs/performance.md use `make bench` (wrk, loopback).
"""

from __future__ import annotations

import os
import random
import time

from locust import FastHttpUser, constant, task

API_KEY = os.environ.get("CCADMIN_API_KEY", "")
USERS = int(os.environ.get("CCADMIN_BENCH_USERS", "1000000"))
PATH = os.environ.get("CCADMIN_BENCH_PATH", "/data")


class ConnectedContentCaller(FastHttpUser):
    """One connection sending requests back to back, as a sending platform does."""

    wait_time = constant(0)

    @task
    def fetch_content(self) -> None:
        user_id = random.randint(1, USERS)
        started = time.perf_counter()
        with self.client.get(
            f"{PATH}?user_id={user_id}",
            headers={"X-API-Key": API_KEY},
            name=PATH,
            catch_response=True,
        ) as response:
            # The caller gives up after 2 s: slower is a failure for it.
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif time.perf_counter() - started > 2:
                response.failure("slower than the caller's 2 s timeout")
