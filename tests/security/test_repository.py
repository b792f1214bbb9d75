"""The repository holds no secrets, the session key has no production default, deps are audited."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

from ccadmin import config

ROOT = config.PROJECT_ROOT
SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Stripe live key": re.compile(r"\b[sr]k_live_[0-9a-zA-Z]{20,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "Heroku API key": re.compile(r"HEROKU_API_KEY\s*=\s*[0-9a-f-]{36}"),
}
FORBIDDEN_FILES = re.compile(r"(^|/)(\.env|.*\.pem|.*\.key|id_rsa|id_ed25519|.*\.p12)$|^instance/")


def repository_files() -> list[str]:
    """Tracked files plus new ones not ignored (what the next commit could add)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    return [name for name in listed if (ROOT / name).is_file()]


def test_no_secret_files_are_tracked():
    files = repository_files()
    assert files, "git ls-files listed nothing"
    assert [name for name in files if FORBIDDEN_FILES.search(name)] == []


def test_no_secrets_in_tracked_files():
    found = []
    for name in repository_files():
        data = (ROOT / name).read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        text = data.decode("utf-8", "replace")
        found += [(name, kind) for kind, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    assert found == []


def test_the_web_process_refuses_to_start_without_a_secret_key(tmp_path):
    """No built-in key on any database: `waitress wsgi:app` outside `make run` stops at once."""
    environ = {name: value for name, value in os.environ.items() if name != "SECRET_KEY"}
    environ.update(CCADMIN_INSTANCE_PATH=str(tmp_path), DATABASE_URL=f"sqlite:///{tmp_path}/a.db")
    started = subprocess.run(
        [sys.executable, "-c", "import wsgi"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0
    assert "SECRET_KEY is not set" in started.stderr


def test_pip_audit_is_pinned_and_runs_in_ci():
    pins = (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert any(re.fullmatch(r"pip-audit==[0-9.]+", line) for line in pins)
    assert "audit_dependencies.py" in (ROOT / ".ci" / "run").read_text()


def _audit_summary(dependencies: list[dict]) -> tuple[str, int]:
    spec = importlib.util.spec_from_file_location("audit", ROOT / ".ci" / "audit_dependencies.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines, status = module.summarize({"dependencies": dependencies})
    return "\n".join(lines), status


def test_an_audit_that_reached_nothing_says_so():
    skipped = [{"name": f"pkg{n}", "skip_reason": "not found on PyPI"} for n in range(35)]
    printed, status = _audit_summary(skipped)
    assert status == 0
    assert "NOTHING AUDITED" in printed and "35 of 35 packages NOT AUDITED" in printed
    assert "no known vulnerabilities" not in printed


def test_an_audit_names_vulnerable_and_unchecked_packages():
    dependencies = [
        {"name": "flask", "version": "1.0", "vulns": [{"id": "GHSA-x", "fix_versions": ["2.0"]}]},
        {"name": "redis", "version": "5.0", "vulns": []},
        {"name": "rq", "skip_reason": "unreachable"},
    ]
    printed, status = _audit_summary(dependencies)
    assert status == 1
    assert "VULNERABLE flask 1.0: GHSA-x (fixed in 2.0)" in printed
    assert "1 of 3 packages NOT AUDITED" in printed and "rq" in printed
