"""The sse-relay chart: lint, render every scenario, validate every manifest against the
Kubernetes API schemas (strict; the oldest supported and the newest shipped version), and check
the properties the chart promises.

Offline: Helm's Go SDK (helm-python-sdk) renders; kubernetes-validate ships the schemas.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import shutil
import subprocess
import tarfile
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest

from conftest import (
    CHART_DIR,
    INLINE_SCENARIOS,
    NAMESPACE,
    RELAY,
    all_scenarios,
    ci_files,
    scenario_values,
    sha256,
)

# Kubernetes versions every manifest is validated against: the chart's floor (Chart.yaml
# kubeVersion, native sidecars on by default) and the newest schema set the package ships.
OLDEST_K8S = "1.29.0"
K8S_VERSIONS = [OLDEST_K8S, kubernetes_validate.latest_version()]

# Kinds kubernetes-validate has no schema for (CRDs), each with the schema used instead.
SCHEMA_DIR = Path(__file__).parent / "schemas"
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SCHEMA_DIR
    / "servicemonitor-monitoring-v1.json",
}

DASHBOARD_METRICS = [
    "sse_relay_subscribers",
    "sse_relay_events_received_total",
    "sse_relay_events_delivered_total",
    "sse_relay_fanout_latency_seconds_bucket",
    "sse_relay_subscriber_lag_events_bucket",
    "sse_relay_subscribers_lagged_total",
    "sse_relay_upstream_connects_total",
    "sse_relay_upstream_reconnects_total",
    "sse_relay_upstream_failures_total",
]


def drain_ms(relay_toml: dict) -> tuple[int, int]:
    """(drain_delay_ms, drain_timeout_ms) the relay will run with (its defaults if absent)."""
    server = relay_toml.get("server", {})
    return server.get("drain_delay_ms", 5000), server.get("drain_timeout_ms", 30000)


def mounts_by_volume(container: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for m in container.get("volumeMounts", []):
        out.setdefault(m["name"], []).append(m)
    return out


# --------------------------------------------------------------------------------------------
# Lint


def test_the_three_ci_values_files_exist():
    assert {p.name for p in ci_files()} >= {
        "default-values.yaml",
        "sidecar-values.yaml",
        "servicemonitor-hpa-values.yaml",
    }


@pytest.mark.parametrize("scenario", ["chart-defaults"] + all_scenarios())
@pytest.mark.parametrize("kube_version", ["v" + v for v in K8S_VERSIONS])
def test_lint_is_clean_in_strict_mode(scenario, kube_version):
    values = None if scenario == "chart-defaults" else scenario_values(scenario)
    report = helm.lint(CHART_DIR, values, strict=True, kube_version=kube_version)
    assert report["errors"] == []
    # Severity 1 is informational ("icon is recommended"); warnings and errors fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_packaged_chart_holds_the_dashboard_but_not_the_tests(tmp_path):
    archive = helm.package(CHART_DIR, destination=tmp_path)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "sse-relay/dashboards/sse-relay.json" in names
    assert "sse-relay/values.schema.json" in names
    assert not [n for n in names if n.startswith(("sse-relay/tests/", "sse-relay/ci/"))]


def test_values_schema_rejects_misspelled_and_invalid_values():
    report = helm.lint(
        CHART_DIR, {"kind": "StatefulSet", "tls": {"existingsecret": "x"}}, strict=True
    )
    text = " ".join(report["errors"])
    assert "/kind" in text and "existingsecret" in text


# --------------------------------------------------------------------------------------------
# Kubernetes API validation


@pytest.mark.parametrize("scenario", ["chart-defaults"] + all_scenarios())
@pytest.mark.parametrize("k8s", K8S_VERSIONS)
def test_every_manifest_is_valid_kubernetes(render, scenario, k8s):
    rendered = render(None if scenario == "chart-defaults" else scenario_values(scenario))
    assert rendered.docs, "nothing rendered"
    problems = []
    for doc in rendered.docs:
        key = (doc["apiVersion"], doc["kind"])
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if key in CRD_SCHEMAS:
            # Not a built-in kind: kubernetes-validate has no schema and would only warn.
            # Validated against our own strict schema of the CRD instead (never skipped).
            schema = json.loads(CRD_SCHEMAS[key].read_text())
            for e in jsonschema.Draft202012Validator(schema).iter_errors(doc):
                problems.append(f"{where} (CRD schema): {e.json_path}: {e.message}")
            continue
        try:
            kubernetes_validate.validate(doc, k8s, strict=True)
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.append(f"{where}: no Kubernetes {k8s} schema ({e.message}); add it to CRD_SCHEMAS")
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{where}: {e.json_path}: {e.message}")
    assert problems == [], f"invalid for Kubernetes {k8s}"


def test_crd_schema_catches_a_misspelled_servicemonitor_field(render):
    monitor = render(scenario_values("servicemonitor-hpa-values.yaml")).one("ServiceMonitor")
    monitor["spec"]["endpoints"][0]["scrapeInterval"] = "30s"
    schema = json.loads(CRD_SCHEMAS[("monitoring.coreos.com/v1", "ServiceMonitor")].read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(monitor)


# --------------------------------------------------------------------------------------------
# Promised properties, in every scenario


@pytest.mark.parametrize("scenario", all_scenarios())
def test_probes_hit_the_admin_port(render_scenario, scenario):
    r = render_scenario(scenario)
    relay = r.relay_container
    admin_port = r.values["ports"]["admin"]
    assert {"name": "admin", "containerPort": admin_port, "protocol": "TCP"} in relay["ports"]
    assert relay["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": admin_port, "scheme": "HTTP"}
    assert relay["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": admin_port, "scheme": "HTTP"}
    assert r.relay_env["SSE_RELAY__ADMIN__LISTEN"] == f"0.0.0.0:{admin_port}"


@pytest.mark.parametrize("scenario", all_scenarios())
def test_grace_period_exceeds_the_drain(render_scenario, scenario):
    r = render_scenario(scenario)
    delay, timeout = drain_ms(r.relay_toml)
    grace = r.pod_spec["terminationGracePeriodSeconds"]
    assert isinstance(grace, int)
    assert grace > (delay + timeout) / 1000
    pre_stop = r.relay_container.get("lifecycle", {}).get("preStop")
    sleep = pre_stop["sleep"]["seconds"] if pre_stop else 0
    app = r.values["sidecar"]["appTerminationSeconds"] if r.values["sidecar"]["enabled"] else 0
    assert grace > (delay + timeout) / 1000 + sleep + app


@pytest.mark.parametrize("scenario", all_scenarios())
def test_security_context_is_locked_down(render_scenario, scenario):
    r = render_scenario(scenario)
    sc = r.relay_container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    pod = r.pod_spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    # A read-only root needs a writable /tmp (the dev certificate).
    volumes = {v["name"]: v for v in r.pod_spec["volumes"]}
    tmp = [m for m in r.relay_container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1 and "emptyDir" in volumes[tmp[0]["name"]]
    assert r.pod_spec["automountServiceAccountToken"] is False


@pytest.mark.parametrize("scenario", all_scenarios())
def test_relay_toml_parses_and_carries_the_chart_owned_keys(render_scenario, scenario):
    r = render_scenario(scenario)
    toml = r.relay_toml  # tomllib raises on invalid TOML
    v = r.values
    env = r.relay_env
    # The chart-owned keys are forced by environment (they win over the file) ...
    assert env["SSE_RELAY__SERVER__LISTEN"] == f"0.0.0.0:{v['ports']['https']}"
    if v["tls"]["existingSecret"]:
        assert env["SSE_RELAY__SERVER__TLS_CERT"] == "/etc/sse-relay/tls/tls.crt"
        assert env["SSE_RELAY__SERVER__TLS_KEY"] == "/etc/sse-relay/tls/tls.key"
    else:
        assert env["SSE_RELAY__SERVER__DEV_CERT_DIR"].startswith("/tmp/")
    if v["ports"]["plaintext"]["enabled"]:
        assert env["SSE_RELAY__SERVER__PLAINTEXT_LISTEN"] == f"0.0.0.0:{v['ports']['plaintext']['port']}"
    # ... and, when the file is rendered from `config`, written there too, identically.
    if not v["configToml"]:
        for name, value in env.items():
            if name.startswith("SSE_RELAY__"):
                section, key = name.removeprefix("SSE_RELAY__").lower().split("__")
                assert toml[section][key] == value, name
    assert r.relay_container["args"] == ["--config", "/etc/sse-relay/relay.toml"]


@pytest.mark.parametrize("scenario", [s for s in all_scenarios() if s != "inline-raw-config-toml"])
def test_relay_toml_contains_the_routes_from_values(render_scenario, scenario):
    r = render_scenario(scenario)
    expected = scenario_values(scenario).get("config", {}).get("route")
    if expected is None:  # the chart's default route
        expected = r.values["config"]["route"]
    assert r.relay_toml["route"] == expected
    assert r.relay_toml["demo_origin"] == {"enabled": False}


def test_raw_config_toml_is_used_verbatim_and_sizes_the_grace_period(render):
    r = render(INLINE_SCENARIOS["inline-raw-config-toml"])
    assert r.relay_toml_text == INLINE_SCENARIOS["inline-raw-config-toml"]["configToml"]
    assert r.relay_toml["route"] == [
        {"path": "/live/{topic}", "upstream": "http://origin:8080/live/{topic}"}
    ]
    # The raw file says 127.0.0.1; the environment puts the listener where the pod needs it.
    assert r.relay_env["SSE_RELAY__SERVER__LISTEN"] == "0.0.0.0:8443"
    assert r.pod_spec["terminationGracePeriodSeconds"] == math.ceil((8000 + 45000) / 1000) + 5


def test_invalid_raw_config_toml_fails_the_render(chart):
    with pytest.raises(helm.HelmRenderError, match="configToml is not valid TOML"):
        chart.render({"configToml": "[server\nlisten = 1"}, name="x")


@pytest.mark.parametrize("scenario", all_scenarios())
def test_checksum_annotation_is_the_hash_of_relay_toml(render_scenario, scenario):
    r = render_scenario(scenario)
    annotations = r.workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/config"] == sha256(r.relay_toml_text)


def test_checksum_changes_when_the_config_changes(render):
    a = render({"config": {"route": [{"path": "/a/{t}", "upstream": "http://o/{t}"}]}})
    b = render({"config": {"route": [{"path": "/b/{t}", "upstream": "http://o/{t}"}]}})
    key = "checksum/config"
    assert (
        a.workload["spec"]["template"]["metadata"]["annotations"][key]
        != b.workload["spec"]["template"]["metadata"]["annotations"][key]
    )


@pytest.mark.parametrize("scenario", all_scenarios())
def test_tls_secret_is_mounted_as_a_directory(render_scenario, scenario):
    r = render_scenario(scenario)
    secret_name = r.values["tls"]["existingSecret"]
    secret_volumes = [v for v in r.pod_spec["volumes"] if "secret" in v]
    mounts = mounts_by_volume(r.relay_container)
    if not secret_name:
        assert secret_volumes == []
        return
    tls = [v for v in secret_volumes if v["secret"]["secretName"] == secret_name]
    assert len(tls) == 1
    tls_mounts = mounts[tls[0]["name"]]
    assert len(tls_mounts) == 1
    # A subPath mount never sees the kubelet's ..data swap, so rotations would be missed.
    assert "subPath" not in tls_mounts[0] and "subPathExpr" not in tls_mounts[0]
    cert = r.relay_env["SSE_RELAY__SERVER__TLS_CERT"]
    key = r.relay_env["SSE_RELAY__SERVER__TLS_KEY"]
    assert posixpath.dirname(cert) == tls_mounts[0]["mountPath"] == posixpath.dirname(key)
    # No Secret anywhere in the pod is mounted with subPath.
    for container in r.pod_spec["containers"] + r.pod_spec.get("initContainers", []):
        for vol in secret_volumes:
            for m in mounts_by_volume(container).get(vol["name"], []):
                assert "subPath" not in m


@pytest.mark.parametrize("scenario", all_scenarios())
def test_service_exposes_https_and_admin(render_scenario, scenario):
    r = render_scenario(scenario)
    svc = r.one("Service")
    ports = {p["name"]: p for p in svc["spec"]["ports"]}
    assert ports["https"]["port"] == 443 and ports["https"]["targetPort"] == 8443
    assert ports["admin"]["port"] == 9090 and ports["admin"]["targetPort"] == 9090
    # Numeric targets: named ports on native sidecars resolve only from Kubernetes 1.32.
    assert all(isinstance(p["targetPort"], int) for p in ports.values())
    pod_labels = r.workload["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()


# --------------------------------------------------------------------------------------------
# Per-mode shapes


def test_default_is_a_deployment_with_a_pdb_and_no_optional_objects(render):
    r = render(scenario_values("default-values.yaml"))
    assert r.workload["kind"] == "Deployment"
    assert r.workload["spec"]["replicas"] == 2
    pdb = r.one("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    pod_labels = r.workload["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert r.of_kind("HorizontalPodAutoscaler") == []
    assert r.of_kind("ServiceMonitor") == []
    assert [c for c in r.of_kind("ConfigMap") if "grafana_dashboard" in c["metadata"]["labels"]] == []
    assert "initContainers" not in r.pod_spec
    assert [c["name"] for c in r.pod_spec["containers"]] == [RELAY]
    assert "restartPolicy" not in r.relay_container


def test_hpa_and_servicemonitor_when_enabled(render):
    r = render(scenario_values("servicemonitor-hpa-values.yaml"))
    hpa = r.one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": r.workload["metadata"]["name"],
    }
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    assert metrics["Pods"]["pods"]["metric"]["name"] == "sse_relay_subscribers"
    assert metrics["Pods"]["pods"]["target"] == {"type": "AverageValue", "averageValue": "4000"}
    assert "replicas" not in r.workload["spec"], "the HPA owns the replica count"

    monitor = r.one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "admin" and endpoint["path"] == "/metrics"
    svc = r.one("Service")
    assert "admin" in {p["name"] for p in svc["spec"]["ports"]}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}

    assert r.one("PodDisruptionBudget")["spec"]["minAvailable"] == 2


def test_cpu_only_hpa_by_default_when_autoscaling(render):
    r = render({"autoscaling": {"enabled": True}})
    metrics = r.one("HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Resource"]


def test_grafana_dashboard_configmap(render):
    r = render(scenario_values("servicemonitor-hpa-values.yaml"))
    (cm,) = [c for c in r.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["sse-relay.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in DASHBOARD_METRICS:
        assert metric in exprs, metric
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Subscribers", "Events in / out", "Fan-out latency p99", "Subscriber lag", "Upstream reconnects"} <= titles
    assert "histogram_quantile(0.99, sum by (le) (rate(sse_relay_fanout_latency_seconds_bucket" in exprs


def test_native_sidecar_shape(render):
    values = scenario_values("sidecar-values.yaml")
    r = render(values)
    spec = r.pod_spec
    assert r.workload["kind"] == "Deployment"
    relay = [c for c in spec["initContainers"] if c["name"] == RELAY]
    assert len(relay) == 1 and relay[0]["restartPolicy"] == "Always"
    assert RELAY not in [c["name"] for c in spec["containers"]]
    assert [c["name"] for c in spec["containers"]] == [c["name"] for c in values["sidecar"]["appContainers"]]
    # The relay's origin is the app in the same pod.
    app_ports = {p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
    for route in r.relay_toml["route"]:
        assert route["upstream"].startswith("http://127.0.0.1:")
        port = int(route["upstream"].removeprefix("http://127.0.0.1:").split("/")[0])
        assert port in app_ports
    assert r.relay_toml["passthrough"]["upstream"] == "http://127.0.0.1:8080"
    # The grace period also covers the app stopping before the relay is signalled.
    delay, timeout = drain_ms(r.relay_toml)
    assert spec["terminationGracePeriodSeconds"] > (delay + timeout) / 1000 + values["sidecar"]["appTerminationSeconds"]


def test_sidecar_mode_needs_app_containers(chart):
    with pytest.raises(helm.HelmRenderError, match="sidecar.appContainers"):
        chart.render({"sidecar": {"enabled": True}}, name="x")


def test_daemonset_has_no_replicas_hpa_or_pdb(render):
    r = render(INLINE_SCENARIOS["inline-daemonset"])
    ds = r.workload
    assert ds["kind"] == "DaemonSet"
    assert "replicas" not in ds["spec"] and "strategy" not in ds["spec"]
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    assert r.of_kind("PodDisruptionBudget") == []
    assert r.of_kind("HorizontalPodAutoscaler") == []


def test_autoscaling_a_daemonset_is_refused(chart):
    with pytest.raises(helm.HelmRenderError, match="autoscaling.enabled needs kind: Deployment"):
        chart.render({"kind": "DaemonSet", "autoscaling": {"enabled": True}}, name="x")


def test_pre_stop_sleep_and_plaintext_listener(render):
    r = render(INLINE_SCENARIOS["inline-plaintext-prestop"])
    assert r.relay_container["lifecycle"]["preStop"] == {"sleep": {"seconds": 3}}
    assert r.pod_spec["terminationGracePeriodSeconds"] == math.ceil((2000 + 20000) / 1000) + 3 + 5
    assert r.relay_toml["server"]["plaintext_listen"] == "0.0.0.0:8080"
    ports = {p["name"]: p for p in r.one("Service")["spec"]["ports"]}
    assert ports["http"]["targetPort"] == 8080
    assert r.relay_env["SSE_RELAY_LOG_FORMAT"] == "text"


def test_explicit_grace_period_must_exceed_the_drain(chart, render):
    with pytest.raises(helm.HelmRenderError, match="must exceed the drain"):
        chart.render({"terminationGracePeriodSeconds": 35}, name="x")  # 5000 + 30000 ms
    assert render({"terminationGracePeriodSeconds": 36}).pod_spec["terminationGracePeriodSeconds"] == 36


def test_dev_certificate_mode_without_a_tls_secret(render):
    r = render(None)
    assert [v for v in r.pod_spec["volumes"] if "secret" in v] == []
    assert "tls_cert" not in r.relay_toml["server"]
    assert r.relay_toml["server"]["dev_cert_dir"] == "/tmp/sse-relay-dev"
    notes = r.manifests["sse-relay/templates/NOTES.txt"]
    assert "DEV certificate" in notes


def test_toml_emitter_handles_escapes_nesting_and_nulls(render):
    r = render(
        {
            "config": {
                "route": [
                    {
                        "path": "/e/{topic}",
                        "upstream": 'http://o:1/s/{topic}?a=1&b="<x>"\\',
                        "query_params": ["a", "b"],
                    }
                ],
                "server": {"h2": {"max_send_buf_size": 131072}, "drain_window_ms": None},
                "replay": {"max_bytes": 16777216},
                "cors": {"allowed_origins": ["https://app.example"], "allow_credentials": False},
            }
        }
    )
    toml = r.relay_toml
    assert toml["route"][0]["upstream"] == 'http://o:1/s/{topic}?a=1&b="<x>"\\'
    assert toml["server"]["h2"] == {"max_send_buf_size": 131072}
    assert "drain_window_ms" not in toml["server"]
    assert toml["replay"]["max_bytes"] == 16777216  # an integer, not 1.6777216e+07
    assert toml["cors"] == {"allowed_origins": ["https://app.example"], "allow_credentials": False}


# --------------------------------------------------------------------------------------------
# Opt-in: the relay binary itself accepts what the chart renders (file + environment).

RELAY_BIN = os.environ.get("SSE_RELAY_BIN", "")


@pytest.fixture(scope="session")
def tls_dir(tmp_path_factory):
    """A throwaway certificate and key standing in for the mounted TLS Secret."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make a test certificate"
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=sse-relay.test",
         "-keyout", str(d / "tls.key"), "-out", str(d / "tls.crt")],
        check=True, capture_output=True,
    )
    return d


@pytest.mark.skipif(
    not RELAY_BIN,
    reason="opt-in: set SSE_RELAY_BIN=target/release/sse-relay to run the relay's own "
    "check-config on every rendered relay.toml with the pod's environment",
)
@pytest.mark.parametrize("scenario", ["chart-defaults"] + all_scenarios())
def test_relay_check_config_accepts_the_rendered_config(render, scenario, tls_dir, tmp_path):
    r = render(None if scenario == "chart-defaults" else scenario_values(scenario))
    mounted = "/etc/sse-relay/tls"
    config = tmp_path / "relay.toml"
    config.write_text(r.relay_toml_text.replace(mounted, str(tls_dir)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSE_RELAY")}
    for name, value in r.relay_env.items():
        if name.startswith("SSE_RELAY") and value is not None:
            if name == "SSE_RELAY__SERVER__DEV_CERT_DIR":
                value = str(tmp_path / "dev-cert")
            env[name] = value.replace(mounted, str(tls_dir))
    done = subprocess.run(
        [RELAY_BIN, "check-config", str(config)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"check-config exit {done.returncode}:\n{done.stdout}{done.stderr}"
