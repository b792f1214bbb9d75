"""Known vulnerabilities in requirements.txt (pip-audit): fail on any, name what went unchecked.

pip-audit asks PyPI's JSON API for each pinned package's advisories. Where
that service cannot be reached (a mirror without the JSON API, no network),
pip-audit reports the packages as skipped and would still print "No known
vulnerabilities found"; here that is reported as NOT AUDITED, and CI does not
fail for it: a network limit is not a vulnerability. A package with a known
vulnerability always fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        report_path = Path(folder) / "audit.json"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip_audit",
                "--requirement",
                str(ROOT / "requirements.txt"),
                "--format",
                "json",
                "--output",
                str(report_path),
                "--progress-spinner",
                "off",
            ],
            capture_output=True,
            text=True,
        )
        if not report_path.exists():
            print(
                "dependency audit NOT RUN: pip-audit stopped before auditing anything "
                "(it needs PyPI to resolve the pins and fetch advisories):"
            )
            print("  " + (result.stderr.strip().splitlines() or ["(no output)"])[-1])
            return 0
        report = json.loads(report_path.read_text())
    lines, status = summarize(report)
    print("\n".join(lines))
    return status


def summarize(report: dict) -> tuple[list[str], int]:
    """What CI prints for a pip-audit JSON report, and the exit status (1: vulnerable)."""
    dependencies = report["dependencies"]
    vulnerable = [dependency for dependency in dependencies if dependency.get("vulns")]
    skipped = [dependency for dependency in dependencies if "skip_reason" in dependency]
    lines = []
    for dependency in vulnerable:
        for vulnerability in dependency["vulns"]:
            fixed = ", ".join(vulnerability.get("fix_versions") or []) or "no fix yet"
            lines.append(
                f"VULNERABLE {dependency['name']} {dependency['version']}: "
                f"{vulnerability['id']} (fixed in {fixed})"
            )
    audited = len(dependencies) - len(skipped)
    if skipped:
        lines.append(
            f"dependency audit: {len(skipped)} of {len(dependencies)} packages NOT "
            "AUDITED (their advisories could not be fetched from PyPI from this machine):"
        )
        lines.append("  " + ", ".join(dependency["name"] for dependency in skipped))
    if vulnerable:
        lines.append(
            f"dependency audit FAILED: {len(vulnerable)} vulnerable package(s); upgrade "
            "the pins in requirements.txt"
        )
        return lines, 1
    if audited == 0:
        lines.append("dependency audit: NOTHING AUDITED, so nothing is known either way")
    else:
        lines.append(
            f"dependency audit: {audited} of {len(dependencies)} package(s) audited, "
            "no known vulnerabilities in those"
        )
    return lines, 0


if __name__ == "__main__":
    sys.exit(main())
