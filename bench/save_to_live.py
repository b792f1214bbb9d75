"""Time from a save in the admin to the new version served by the API.

Runs against a stack that is already up (`make run`): logs in through the
admin's login form, edits one entry N times through its edit form, and after
each save polls the API until the new message is served. Prints the median,
p95 and max. Standard library only, so it runs from any Python.

    .venv/bin/python bench/save_to_live.py --edits 100
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import re
import statistics
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
EDIT_LINK = re.compile(r"/admin/content/edit/\?id=(\d+)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin", default="http://127.0.0.1:5000")
    parser.add_argument("--api", default="http://127.0.0.1:8000")
    parser.add_argument(
        "--credentials",
        default="instance/credentials.json",
        help="written by `make run` on its first start",
    )
    parser.add_argument("--campaign", default="default")
    parser.add_argument("--user-id", default="42")
    parser.add_argument("--edits", type=int, default=100)
    parser.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for one edit to go live"
    )
    return parser.parse_args()


class Admin:
    """A logged-in browser session against the admin, cookies and CSRF included."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as response:
            return response.read().decode("utf-8")

    def post(self, path: str, form: dict[str, str]) -> str:
        data = urllib.parse.urlencode(form).encode()
        with self.opener.open(self.base + path, data=data, timeout=10) as response:
            return response.read().decode("utf-8")

    def csrf(self, path: str) -> str:
        match = CSRF_INPUT.search(self.get(path))
        if not match:
            raise SystemExit(f"no CSRF token on {path}")
        return match.group(1)

    def login(self, email: str, password: str) -> None:
        token = self.csrf("/login")
        page = self.post("/login", {"email": email, "password": password, "csrf_token": token})
        if "logout" not in page.lower():
            raise SystemExit("login failed: check the credentials")

    def entry_id(self, user_id: str) -> str:
        query = urllib.parse.urlencode({"search": user_id})
        match = EDIT_LINK.search(self.get(f"/admin/content/?{query}"))
        if not match:
            raise SystemExit(f"no content entry for user {user_id}")
        return match.group(1)


def served_message(api: str, campaign: str, user_id: str, key: str) -> str | None:
    url = f"{api}/v1/{campaign}?" + urllib.parse.urlencode({"user_id": user_id})
    request = urllib.request.Request(url, headers={"X-API-Key": key})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return json.loads(response.read()).get("message")
    except OSError:
        return None


def main() -> int:
    args = parse_args()
    credentials = json.loads(Path(args.credentials).read_text())
    admin = Admin(args.admin)
    admin.login(credentials["admin_email"], credentials["admin_password"])
    entry_path = f"/admin/content/edit/?id={admin.entry_id(args.user_id)}"
    latencies = []
    for number in range(args.edits):
        message = f"save-to-live {time.time_ns()} #{number}"
        token = admin.csrf(entry_path)
        started = time.perf_counter()
        admin.post(entry_path, {"csrf_token": token, "field_message": message})
        deadline = started + args.timeout
        while (
            served_message(args.api, args.campaign, args.user_id, credentials["api_key"]) != message
        ):
            if time.perf_counter() > deadline:
                raise SystemExit(f"edit #{number} not live within {args.timeout} s")
            time.sleep(0.002)
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
    median = statistics.median(latencies)
    print(
        f"save to live over {len(latencies)} edits: median {median * 1000:.0f} ms,"
        f" p95 {p95 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
