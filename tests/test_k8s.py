"""The Kubernetes manifests (infra/k8s, kustomize): parsed and checked here (no cluster on CI).

As the compose file is: every service has a Deployment that runs it;
stateless services scale by replicas and singletons have a standby; probes
on /readyz and /healthz at the port the service listens on; every
environment variable a Deployment sets is a setting the service reads, and
comes from the one ConfigMap or the one Secret that kustomize generates
from infra/production.env and infra/production.secrets.env.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import yaml
from pydantic_settings import BaseSettings

from services.cli.up import SINGLETONS, discover_services
from services.common.settings import CommonSettings
from tests.test_compose import ROOT, read_env_file

K8S = ROOT / "infra" / "k8s"
CONFIG, SECRETS = "driftline-config", "driftline-secrets"
# One replica, and why: faust's windowed tables are split across a group's
# workers, and the console serves the tables its own worker holds.
ONE_REPLICA = {"telemetry"}


def kustomization() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return document


def resources() -> list[dict[str, Any]]:
    """Every object of every file the kustomization lists."""
    found: list[dict[str, Any]] = []
    for name in kustomization()["resources"]:
        found += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return found


def generated(kind: str) -> dict[str, str]:
    """The keys and values of the ConfigMap or Secret kustomize generates."""
    (generator,) = kustomization()[kind]
    values: dict[str, str] = {}
    for path in generator["envs"]:
        values.update(read_env_file(K8S / path))
    return values


def deployments() -> dict[str, dict[str, Any]]:
    """Deployments of driftline services, by the service each runs."""
    found = {}
    for document in resources():
        if document["kind"] != "Deployment":
            continue
        (container,) = document["spec"]["template"]["spec"]["containers"]
        command = container["command"]
        if command[:2] == ["python", "-m"] and command[2].startswith("services."):
            found[command[2].removeprefix("services.")] = document
    return found


@cache
def settings_classes(service: str) -> tuple[type[BaseSettings], ...]:
    """The settings classes a service's process reads.

    The batch trainer's and the registry's default data sources are the Feast
    offline store's (``services.common.featurestore``), which read its settings.
    """
    from services.batch_trainer.settings import BatchTrainerSettings
    from services.common.featurestore import FeatureStoreSettings
    from services.drift_detector.settings import DriftDetectorSettings
    from services.features.service import FeaturesSettings
    from services.inference.settings import InferenceSettings
    from services.ingestion.service import IngestionSettings
    from services.online_trainer.settings import OnlineTrainerSettings
    from services.registry.settings import RegistrySettings
    from services.telemetry.settings import TelemetrySettings

    own: dict[str, type[BaseSettings]] = {
        "batch_trainer": BatchTrainerSettings,
        "drift_detector": DriftDetectorSettings,
        "features": FeaturesSettings,
        "inference": InferenceSettings,
        "ingestion": IngestionSettings,
        "online_trainer": OnlineTrainerSettings,
        "registry": RegistrySettings,
        "telemetry": TelemetrySettings,
    }
    assert set(own) == set(discover_services()), "a new service: name its settings class here"
    classes: list[type[BaseSettings]] = [own[service]]
    for field in ("training_data", "gate_data"):
        info = own[service].model_fields.get(field)
        if info is not None and str(info.default).startswith("services.common.featurestore:"):
            classes.append(FeatureStoreSettings)
    return tuple(classes)


def known_variables(service: str) -> set[str]:
    """``DRIFTLINE_<FIELD>`` for every field of the service's settings classes."""
    return {
        f"DRIFTLINE_{name.upper()}"
        for cls in settings_classes(service)
        for name in cls.model_fields
        if issubclass(cls, CommonSettings)
    }


def container(service: str) -> dict[str, Any]:
    (found,) = deployments()[service]["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = found
    return result


def test_every_service_has_a_deployment_that_runs_it() -> None:
    assert set(deployments()) == set(discover_services())
    for service, deployment in deployments().items():
        assert deployment["metadata"]["name"] == service.replace("_", "-")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), service


def test_stateless_services_scale_out_and_singletons_have_a_standby() -> None:
    for service, deployment in deployments().items():
        replicas = deployment["spec"]["replicas"]
        env = {e["name"]: e.get("value") for e in container(service)["env"]}
        if service in SINGLETONS:
            assert replicas == 2, f"{service}: one active and one standby, not {replicas}"
            assert env.get("DRIFTLINE_STANDBY") == "true", f"{service} needs its lease"
        elif service in ONE_REPLICA:
            assert replicas == 1, service
        else:
            assert replicas >= 2, f"{service} is stateless: it should run replicas"
    partitions = int(generated("configMapGenerator")["DRIFTLINE_PARTITIONS"])
    for service in ("ingestion", "features"):
        assert deployments()[service]["spec"]["replicas"] <= partitions, "replicas would sit idle"


def test_probes_are_on_readyz_and_healthz_at_the_port_the_service_listens_on() -> None:
    from services.inference.settings import InferenceSettings

    config = generated("configMapGenerator")
    for service in deployments():
        spec = container(service)
        env = {e["name"]: e for e in spec["env"]}
        if service == "inference":
            default = InferenceSettings.model_fields["port"].default
            assert env["DRIFTLINE_PORT"]["value"] == str(default)
            port = default
        else:  # the health server's port comes from the ConfigMap (the default, 0, is random)
            assert env["DRIFTLINE_HEALTH_PORT"]["valueFrom"]["configMapKeyRef"]["name"] == CONFIG
            port = int(config["DRIFTLINE_HEALTH_PORT"])
        ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
        assert spec["ports"][0]["containerPort"] == port, service
        if service == "telemetry":  # and its console, on a port of its own
            console = int(env["DRIFTLINE_CONSOLE_PORT"]["value"])
            assert ports == {"health": port, "console": console}, ports
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            check = spec[probe]["httpGet"]
            assert check["path"] == path, (service, probe)
            assert ports.get(check["port"], check["port"]) == port, (service, probe)
        annotations = deployments()[service]["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"


def test_every_variable_is_a_setting_of_the_service_from_the_one_configmap_or_secret() -> None:
    config, secrets = generated("configMapGenerator"), generated("secretGenerator")
    assert kustomization()["configMapGenerator"][0]["name"] == CONFIG
    assert kustomization()["secretGenerator"][0]["name"] == SECRETS
    used: set[str] = set()
    for service in deployments():
        known = known_variables(service)
        for variable in container(service)["env"]:
            name = variable["name"]
            assert name in known, f"{service} sets {name}, which none of its settings reads"
            source = variable.get("valueFrom", {})
            if "configMapKeyRef" in source:
                reference, values = source["configMapKeyRef"], config
                assert reference["name"] == CONFIG, (service, name)
            elif "secretKeyRef" in source:
                reference, values = source["secretKeyRef"], secrets
                assert reference["name"] == SECRETS, (service, name)
            else:  # a literal: only a setting of this one service, never a shared one
                assert name not in config and name not in secrets, (service, name)
                continue
            assert reference["key"] == name and name in values, (service, name)
            used.add(name)
        assert "envFrom" not in container(service), "each variable by name, so each is checked"
    unused = set(config) | {k for k in secrets if k.startswith("DRIFTLINE_")}
    assert unused - used == set(), "settings no Deployment reads"


def test_secrets_are_not_in_the_configmap() -> None:
    config, secrets = generated("configMapGenerator"), generated("secretGenerator")
    for name in ("DRIFTLINE_API_KEY", "DRIFTLINE_FEAST_REGISTRY_URL", "MLFLOW_BACKEND_STORE_URI"):
        assert name in secrets and name not in config, name
    assert "DRIFTLINE_STATE_URL" in secrets and "DRIFTLINE_STATE_URL" not in config
    assert not [value for value in config.values() if "@" in value], "credentials in the config"


def test_every_service_shares_the_data_volume_the_compose_file_shares() -> None:
    claims = {d["metadata"]["name"]: d for d in resources() if d["kind"] == "PersistentVolumeClaim"}
    assert claims["driftline-data"]["spec"]["accessModes"] == ["ReadWriteMany"]
    home = generated("configMapGenerator")["DRIFTLINE_HOME"]
    for service, deployment in deployments().items():
        mounts = {m["mountPath"]: m["name"] for m in container(service)["volumeMounts"]}
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        volume = volumes[mounts[home]]
        assert volume["persistentVolumeClaim"]["claimName"] == "driftline-data", service


def test_inference_and_mlflow_are_reachable_by_the_names_the_settings_use() -> None:
    services = {d["metadata"]["name"]: d for d in resources() if d["kind"] == "Service"}
    config = generated("configMapGenerator")
    host, port = config["DRIFTLINE_MLFLOW_URI"].removeprefix("http://").split(":")
    assert [p["port"] for p in services[host]["spec"]["ports"]] == [int(port)]
    assert [p["port"] for p in services["inference"]["spec"]["ports"]] == [8000]
    mlflow = next(d for d in resources() if d["metadata"]["name"] == "mlflow")
    (server,) = mlflow["spec"]["template"]["spec"]["containers"]
    assert server["command"][-1] == port
    assert server["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "MLFLOW_BACKEND_STORE_URI"


def test_the_kustomization_lists_every_manifest_file() -> None:
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert files == set(kustomization()["resources"])


def test_every_compose_variable_is_a_setting_of_its_service() -> None:
    from tests.test_compose import compose, environment

    services = compose()["services"]
    for service in discover_services():
        unknown = set(environment(services[service])) - known_variables(service)
        shared = set(generated("configMapGenerator")) | set(generated("secretGenerator"))
        assert unknown - shared == set(), f"{service} in docker-compose.yml: {sorted(unknown)}"
        standby = environment(services[service]).get("DRIFTLINE_STANDBY")
        assert (standby == "true") == (service in SINGLETONS), service
