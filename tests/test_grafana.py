"""Prometheus and Grafana for the production profile (infra/prometheus, infra/grafana).

Every metric a dashboard panel queries is one that something in the compose
file exports: a driftline service (its Counter, Gauge and Histogram
definitions, found in the source and cross-checked against the live
registry) or kafka-exporter (consumer lag and topic offsets). Every
service's /metrics is scraped, at the port the service listens on. The
compose file mounts these files where Prometheus and Grafana read them.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import yaml

from services.cli.up import discover_services
from tests.test_compose import ROOT, compose, production_settings

PROMETHEUS = ROOT / "infra" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "infra" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))

# kafka-exporter's series (github.com/danielqsj/kafka_exporter, README "Metrics").
KAFKA_EXPORTER = {
    "kafka_brokers",
    "kafka_topic_partitions",
    "kafka_topic_partition_current_offset",
    "kafka_topic_partition_oldest_offset",
    "kafka_consumergroup_current_offset",
    "kafka_consumergroup_lag",
    "kafka_consumergroup_members",
}
# Words of PromQL that look like metric names.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
PROMQL_WORDS |= {"and", "or", "unless", "inf", "nan"}


def exported_series() -> set[str]:
    """The series names every ``prometheus_client`` metric defined under services/ exports."""
    kinds = {
        "Counter": ("_total", "_created"),
        "Gauge": ("",),
        "Histogram": ("_bucket", "_sum", "_count", "_created"),
        "Summary": ("_sum", "_count", "_created"),
    }
    series: set[str] = set()
    for path in (ROOT / "services").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in kinds or not node.args:
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                name = first.value.removesuffix("_total")
                series |= {name + suffix for suffix in kinds[node.func.id]}
    return series


def dashboard(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def panels(document: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for panel in document["panels"]:
        found += [panel, *panel.get("panels", [])]
    return [p for p in found if p["type"] != "row"]


def queries(document: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: its panels' and its variables'."""
    found = [t["expr"] for p in panels(document) for t in p.get("targets", [])]
    for variable in document.get("templating", {}).get("list", []):
        query = variable.get("query")
        found.append(query["query"] if isinstance(query, dict) else str(query))
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads.

    >>> sorted(metric_names('sum by (usecase) (rate(a_total{x=~"b|c"}[1m])) / b_count'))
    ['a_total', 'b_count']
    >>> metric_names('histogram_quantile(0.95, sum by (le) (rate(h_bucket[5m])))')
    {'h_bucket'}
    >>> metric_names("label_values(driftline_x_total, usecase)")
    {'driftline_x_total'}
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"label_values\(\s*([a-zA-Z_:][\w:]*)\s*,[^)]*\)", r"\1", text)
    names = set(re.findall(r"[a-zA-Z_:][\w:]*(?!\s*\()\b", text))
    functions = set(re.findall(r"([a-zA-Z_:][\w:]*)\s*\(", text))
    return {n for n in names - functions if n not in PROMQL_WORDS and not n.startswith("$")}


def test_the_source_scan_finds_what_services_register() -> None:
    """The scan is checked against the live registry of three services' metric modules."""
    from prometheus_client import REGISTRY

    import services.inference.metrics
    import services.online_trainer.telemetry
    import services.registry.telemetry  # noqa: F401

    live = {s.name for m in REGISTRY.collect() for s in m.samples}
    # Other tests of this process register their own probes (driftline_test_*).
    live = {n for n in live if n.startswith("driftline_") and not n.startswith("driftline_test_")}
    assert live, "no driftline metric registered"
    assert live <= exported_series(), sorted(live - exported_series())


def test_every_metric_a_panel_queries_is_exported() -> None:
    assert DASHBOARDS, "no dashboard under infra/grafana/dashboards"
    known = exported_series() | KAFKA_EXPORTER
    for path in DASHBOARDS:
        for expr in queries(dashboard(path)):
            names = metric_names(expr)
            assert names, f"{path.name}: no metric in {expr!r}"
            assert names <= known, f"{path.name}: {sorted(names - known)} in {expr!r}"


def test_the_dashboard_covers_the_loop() -> None:
    """Throughput, lag, latency, dead letters, drift scores and model versions."""
    wanted = {
        "throughput": "driftline_ingestion_events_total",
        "consumer lag": "kafka_consumergroup_lag",
        "latency": "driftline_inference_request_seconds_bucket",
        "dead letters": "kafka_topic_partition_current_offset",
        "drift": "driftline_drift_score",
        "model versions": "driftline_inference_serving",
    }
    documents = [dashboard(path) for path in DASHBOARDS]
    read = {name for document in documents for e in queries(document) for name in metric_names(e)}
    titles = " ".join(p["title"].lower() for document in documents for p in document["panels"])
    for topic, metric in wanted.items():
        assert metric in read, topic
        assert topic in titles or topic.split()[0] in titles, topic


def test_panels_use_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = provisioned["datasources"]
    prometheus = compose()["services"]["prometheus"]
    assert source["url"] == f"http://prometheus:{prometheus['ports'][0].split(':')[-1]}"
    for path in DASHBOARDS:
        for panel in panels(dashboard(path)):
            uids = {panel["datasource"]["uid"], *(t["datasource"]["uid"] for t in panel["targets"])}
            assert uids == {source["uid"]}, (path.name, panel["title"])


def test_every_service_is_scraped_where_it_serves_metrics() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    health = int(production_settings()["DRIFTLINE_HEALTH_PORT"])
    services = compose()["services"]
    for service in discover_services():
        job = jobs.get(service)
        assert job is not None, f"services/{service} is not scraped"
        assert job.get("metrics_path", "/metrics") == "/metrics"
        (discovery,) = job["dns_sd_configs"]
        assert discovery["names"] == [service] and discovery["type"] == "A"
        listens = services[service].get("environment", {}).get("DRIFTLINE_PORT")
        assert discovery["port"] == int(listens or health), service
    (exporter,) = jobs["kafka"]["static_configs"][0]["targets"]
    assert exporter.split(":")[0] in services


def test_compose_mounts_the_files_prometheus_and_grafana_read() -> None:
    services = compose()["services"]
    mounts = {
        name: {m.split(":")[0]: m.split(":")[1] for m in services[name]["volumes"] if "/" in m}
        for name in ("prometheus", "grafana")
    }
    assert mounts["prometheus"]["./infra/prometheus/prometheus.yml"] == (
        "/etc/prometheus/prometheus.yml"
    )
    assert mounts["grafana"]["./infra/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/driftline.yml").read_text())
    (dashboards,) = provider["providers"]
    assert mounts["grafana"]["./infra/grafana/dashboards"] == dashboards["options"]["path"]
    assert "kafka.server=kafka:9092" in " ".join(services["kafka-exporter"]["command"])
