"""The repository holds no secrets, the session key has no production default, deps are audited."""

from __future__ import annotations

import re
import subprocess

import pytest

from ccadmin import config
from ccadmin.config import ConfigError

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
        cwd=ROOT, capture_output=True, text=True, check=True,
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


@pytest.mark.parametrize("secret", [None, "", config.DEV_SECRET_KEY])
def test_secret_key_has_no_production_default(secret):
    environ = {"DATABASE_URL": "postgresql://app@db.example/cc"}
    if secret is not None:
        environ["SECRET_KEY"] = secret
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        config.load(environ=environ)


def test_the_development_key_is_only_for_the_local_default():
    assert config.load(environ={}).secret_key == config.DEV_SECRET_KEY


def test_pip_audit_is_pinned_and_runs_in_ci():
    pins = (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert any(re.fullmatch(r"pip-audit==[0-9.]+", line) for line in pins)
    assert "audit_dependencies.py" in (ROOT / ".ci" / "run").read_text()
