"""The API's hot path stays free of the admin's heavy dependencies (docs/architecture.md)."""

from __future__ import annotations

import subprocess
import sys

from ccadmin.config import PROJECT_ROOT

FORBIDDEN = ("sqlalchemy", "flask", "flask_admin", "wtforms", "plotly", "psycopg2", "rq")

PROBE = f"""
import sys
import ccadmin.api, ccadmin.api.app, ccadmin.api.server, ccadmin.api.__main__
loaded = sorted(
    name for name in sys.modules
    if name.split(".")[0] in {FORBIDDEN!r}
)
print(",".join(loaded))
"""


def test_api_imports_none_of_the_admin_stack():
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "", f"the API imported: {result.stdout.strip()}"


def test_the_probe_would_notice_a_forbidden_import():
    result = subprocess.run(
        [sys.executable, "-c", "import rq.job\n" + PROBE],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "rq" in result.stdout.strip().split(",")
