"""Prometheus: the admin's /metrics; deploy/'s rules and dashboard against a running stack."""

from __future__ import annotations

import dataclasses
import json
import re
import urllib.error
import urllib.request

import promql_parser
import pytest
import yaml
from common.api_support import ENV_KEY
from common.manage_support import bearer, make_token
from common.publishing_support import make_campaign, publish_pending, save_entry
from common.security_support import take_redis_down
from common.support import start_stack, wait_until
from prometheus_client.parser import text_string_to_metric_families

from ccadmin.config import PROJECT_ROOT

TOKEN = "scrape-token-for-the-tests"
ALERTS = PROJECT_ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "ccadmin.json"
METRIC_NAME = re.compile(r"\bccadmin_[a-z0-9_]+")


@pytest.fixture
def scrape(app, client):
    """The admin's /metrics, with the scrape token configured for this test."""
    app.config["CCADMIN_SETTINGS"] = dataclasses.replace(
        app.config["CCADMIN_SETTINGS"], metrics_token=TOKEN
    )

    def get() -> dict[str, float]:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return samples(response.get_data(as_text=True))

    return get


def samples(text: str) -> dict[str, float]:
    """Every sample as `name{label="value",...}` -> value, through prometheus_client's parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found


def test_the_admin_metrics_need_the_token(app, client):
    assert client.get("/metrics").status_code == 404  # off: no token configured
    app.config["CCADMIN_SETTINGS"] = dataclasses.replace(
        app.config["CCADMIN_SETTINGS"], metrics_token=TOKEN
    )
    for presented in (None, "Bearer wrong", f"Basic {TOKEN}", TOKEN):
        headers = {} if presented is None else {"Authorization": presented}
        assert client.get("/metrics", headers=headers).status_code == 404


def test_the_pipeline_is_counted(app, client, scrape):
    campaign = make_campaign("spring")
    save_entry(campaign, "1", "Hello")
    save_entry(campaign, "2", "Hi")
    before = scrape()
    # The campaign's config and the two entries.
    assert before["ccadmin_outbox_pending_events"] == 3
    assert before["ccadmin_outbox_oldest_pending_age_seconds"] >= 0
    assert before["ccadmin_database_up"] == 1 and before["ccadmin_redis_up"] == 1
    assert publish_pending() == 3
    token = make_token()
    client.get("/manage/v1/campaigns", headers=bearer(token))
    client.get("/manage/v1/campaigns/nope", headers=bearer(token))
    after = scrape()
    assert after["ccadmin_outbox_pending_events"] == 0
    lags = "ccadmin_publish_lag_seconds_count"
    assert after[lags] == before[lags] + 3
    assert after["ccadmin_publish_writes_total"] > before["ccadmin_publish_writes_total"]
    for status in ("200", "404"):
        sample = f'ccadmin_ingest_requests_total{{method="GET",status="{status}"}}'
        assert after[sample] == before.get(sample, 0) + 1
    assert after['ccadmin_queue_failed_jobs{queue="ccadmin-imports"}'] == 0


def test_a_scrape_with_redis_down_still_answers(app, scrape):
    take_redis_down(app)
    found = scrape()
    assert found["ccadmin_redis_up"] == 0 and found["ccadmin_database_up"] == 1
    assert "ccadmin_workers" not in found


def rules() -> list[dict]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in document["panels"] for target in panel.get("targets", [])]


def anchor(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading (GitHub's rule)."""
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


def test_every_rule_says_what_and_links_a_runbook_section_that_exists():
    operations = (PROJECT_ROOT / "docs" / "operations.md").read_text()
    sections = {
        anchor(line.lstrip("#")) for line in operations.splitlines() if line.startswith("#")
    }
    assert len(rules()) >= 8
    for rule in rules():
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        path, _, section = annotations["runbook_url"].partition("#")
        assert path == "docs/operations.md" and section in sections, rule["alert"]
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus"
    assert len(dashboard_expressions()) >= 20


def test_every_expression_is_valid_promql():
    expressions = [rule["expr"] for rule in rules()] + dashboard_expressions()
    for expression in expressions:
        promql_parser.parse(expression)  # raises on a syntax error
    with pytest.raises(ValueError):
        promql_parser.parse("sum(rate(ccadmin_api_requests_total[1m])")


def served_names(url: str, headers: dict[str, str]) -> set[str]:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
        text = answer.read().decode()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in ("", *suffixes.get(family.type, ())))
    return names


def test_every_metric_of_the_rules_and_the_dashboard_is_served_by_a_running_stack(app, spawn):
    expressions = [rule["expr"] for rule in rules()] + dashboard_expressions()
    wanted = {name for expression in expressions for name in METRIC_NAME.findall(expression)}
    assert len(wanted) >= 25
    web, api = start_stack(spawn, env={"CCADMIN_METRICS_TOKEN": TOKEN})
    request = urllib.request.Request(f"{api}/data?user_id=1", headers={"X-API-Key": ENV_KEY})
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError:
        pass  # whatever the answer, it is counted

    def missing() -> set[str]:
        served = served_names(f"{web}/metrics", {"Authorization": f"Bearer {TOKEN}"})
        return wanted - served - served_names(f"{api}/metrics", {})

    # The worker's heartbeat and the API's first flush come within seconds.
    wait_until(lambda: not missing(), timeout=20)
    assert missing() == set()
