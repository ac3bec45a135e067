"""conf/certforge-alerts.yml: valid YAML naming only metrics certforge exports, and, with
promtool (Debian ``prometheus``, installed by ./dev test), valid rules that fire on the
series they are written for."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from server.web.metrics import Metrics

RULES = Path(__file__).parents[3] / "conf" / "certforge-alerts.yml"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian prometheus)")


def rules() -> list[dict[str, object]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def test_every_rule_names_an_exported_metric() -> None:
    exported = {m.name for m in Metrics().registry.collect()} | {"up"}
    for rule in rules():
        names = set(re.findall(r"\b(certforge_\w+|up)\b", str(rule["expr"])))
        assert names, rule["alert"]
        assert names <= exported, rule["alert"]
        assert {"summary"} <= set(rule["annotations"])  # type: ignore[call-overload]


def test_the_alerts_the_issue_asks_for_are_there() -> None:
    assert {str(r["alert"]) for r in rules()} >= {
        "CertforgeDown",
        "CertforgeCACertificateExpiringIn90Days",
        "CertforgeCACertificateExpiringIn30Days",
        "CertforgeCertificatesExpiringIn7Days",
        "CertforgeCRLNextUpdateSoon",
        "CertforgeCRLStale",
        "CertforgePendingRequestsWaiting",
    }


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


PROMTOOL_TEST = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'certforge_ca_certificate_expiry_seconds{{ca="issuing"}}'
        values: '{ca_left}x10'
      - series: 'certforge_crl_next_update_seconds{{crl="issuing"}}'
        values: '1800x10'
      - series: 'certforge_crl_age_seconds{{crl="root"}}'
        values: '60x10'
      - series: 'up{{job="certforge", instance="ca1"}}'
        values: '0x10'
    alert_rule_test:
      - eval_time: 6m
        alertname: CertforgeCACertificateExpiringIn90Days
        exp_alerts:
          - exp_labels: {{severity: warning, ca: issuing}}
            exp_annotations: {{summary: "CA certificate issuing expires in 60d 0h 0m 0s"}}
      - eval_time: 6m
        alertname: CertforgeCACertificateExpiringIn30Days
        exp_alerts: []
      - eval_time: 6m
        alertname: CertforgeCRLNextUpdateSoon
        exp_alerts:
          - exp_labels: {{severity: critical, crl: issuing}}
            exp_annotations:
              summary: "CRL issuing reaches its nextUpdate in 30m 0s (not re-issued)"
      - eval_time: 6m
        alertname: CertforgeCRLStale
        exp_alerts: []
      - eval_time: 6m
        alertname: CertforgeDown
        exp_alerts:
          - exp_labels: {{severity: critical, job: certforge, instance: ca1}}
            exp_annotations: {{summary: "certforge ca1 does not answer /metrics"}}
"""


@needs_promtool
def test_promtool_alerts_fire_on_their_series(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    test = tmp_path / "alerts-test.yml"
    test.write_text(PROMTOOL_TEST.format(rules=RULES, ca_left=60 * 86400))
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(test)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
