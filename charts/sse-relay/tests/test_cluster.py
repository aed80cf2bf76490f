"""Cluster mode (`cluster.*` values, issue 12): off, it renders nothing new; on, it renders the
headless peers Service, the peer port, relay.toml's [cluster] keys (and the same keys by
environment, `self` from the pod IP), a NetworkPolicy that admits the peer port only from the
release's pods, and the token and peer TLS Secrets (generated, or existing ones when named).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest

from conftest import (
    CHART_DIR,
    INLINE_SCENARIOS,
    NAMESPACE,
    all_scenarios,
    scenario_values,
)
from test_chart import K8S_VERSIONS

CLUSTER_DIR = "/etc/sse-relay/cluster"
SERVER_TLS_DIR = "/etc/sse-relay/tls"
POD_IP = "10.1.2.3"

ON = {"enabled": True}
CLUSTER_SCENARIOS: dict[str, dict] = {
    "cluster-generated": {"tls": {"existingSecret": "edge-tls"}, "cluster": ON},
    "cluster-dev-cert": {"cluster": ON},
    "cluster-existing-secrets": {
        "tls": {"existingSecret": "edge-tls"},
        "ports": {"plaintext": {"enabled": True, "port": 8080}},
        "cluster": {
            "enabled": True,
            "peerPort": 7443,
            "refreshMs": 2000,
            "peerName": "relay-mesh.internal",
            "clusterDomain": "k8s.example",
            "existingTlsSecret": "peer-tls",
            "existingTokenSecret": "peer-token",
        },
    },
    "cluster-sidecar": {**scenario_values("sidecar-values.yaml"), "cluster": ON},
    "cluster-daemonset": {**INLINE_SCENARIOS["inline-daemonset"], "cluster": ON},
    "cluster-raw-config-toml": {**INLINE_SCENARIOS["inline-raw-config-toml"], "cluster": ON},
}


def secrets_by_name(r) -> dict[str, dict]:
    return {s["metadata"]["name"]: s for s in r.of_kind("Secret")}


def decoded(secret: dict) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def selector_labels(r) -> dict[str, str]:
    return r.workload["spec"]["selector"]["matchLabels"]


def peer_policies(r) -> list[dict]:
    """The cluster's NetworkPolicy (the admin port has its own, see test_admin.py)."""
    return [p for p in r.of_kind("NetworkPolicy") if p["metadata"]["name"].endswith("-peers")]


def peer_policy(r) -> dict:
    (policy,) = peer_policies(r)
    return policy


def env_list(r) -> list[dict]:
    return r.relay_container["env"]


def as_relay_reads_it(raw: str):
    """An SSE_RELAY__* value as the relay reads it: a TOML value when it parses as one."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


# --------------------------------------------------------------------------------------------
# Off by default


@pytest.mark.parametrize("scenario", ["chart-defaults"] + all_scenarios())
def test_disabled_renders_nothing_of_the_cluster(render, scenario):
    r = render(None if scenario == "chart-defaults" else scenario_values(scenario))
    assert r.values["cluster"]["enabled"] is False
    assert peer_policies(r) == [] and r.of_kind("Secret") == []
    assert [s["metadata"]["name"] for s in r.of_kind("Service")] == [r.workload["metadata"]["name"]]
    assert "cluster" not in r.relay_toml
    assert not [e for e in env_list(r) if e["name"] == "POD_IP" or "CLUSTER" in e["name"]]
    assert "peer" not in {p["name"] for p in r.relay_container["ports"]}
    assert "cluster" not in {v["name"] for v in r.pod_spec["volumes"]}
    # Only whitespace comes out of the cluster templates, and Helm drops empty manifests.
    for template, text in r.manifests.items():
        if "/cluster-" in template:
            assert text.strip() == "", template


# --------------------------------------------------------------------------------------------
# On: every cluster scenario is a valid, lint-clean chart


@pytest.mark.parametrize("scenario", list(CLUSTER_SCENARIOS))
@pytest.mark.parametrize("k8s", K8S_VERSIONS)
def test_cluster_manifests_are_valid_kubernetes(render, scenario, k8s):
    problems = []
    for doc in render(CLUSTER_SCENARIOS[scenario]).docs:
        try:
            kubernetes_validate.validate(doc, k8s, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {e.json_path}: {e.message}")
    assert problems == []


@pytest.mark.parametrize("scenario", list(CLUSTER_SCENARIOS))
def test_cluster_lint_is_clean_in_strict_mode(scenario):
    report = helm.lint(CHART_DIR, CLUSTER_SCENARIOS[scenario], strict=True, kube_version="v" + K8S_VERSIONS[0])
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


# --------------------------------------------------------------------------------------------
# The peers Service, the peer port and relay.toml


def test_headless_peers_service_selects_the_release_pods(render):
    r = render(CLUSTER_SCENARIOS["cluster-generated"])
    (svc,) = [s for s in r.of_kind("Service") if s["metadata"]["name"] == "sse-relay-peers"]
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["ports"] == [{"name": "peer", "port": 9443, "targetPort": 9443, "protocol": "TCP"}]
    pod_labels = r.workload["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"] == selector_labels(r)
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert {"name": "peer", "containerPort": 9443, "protocol": "TCP"} in r.relay_container["ports"]


def test_relay_toml_carries_the_cluster_keys(render):
    r = render(CLUSTER_SCENARIOS["cluster-generated"])
    assert r.relay_toml["cluster"] == {
        "dns_name": f"sse-relay-peers.{NAMESPACE}.svc.cluster.local",
        "peer_listen": "0.0.0.0:9443",
        "refresh_ms": 5000,
        "ca_file": f"{CLUSTER_DIR}/ca.crt",
        "cert_file": f"{CLUSTER_DIR}/tls.crt",
        "key_file": f"{CLUSTER_DIR}/tls.key",
        "token_file": f"{CLUSTER_DIR}/token",
        "peer_name": "sse-relay-peer",
    }


def test_values_reach_the_cluster_keys(render):
    r = render(CLUSTER_SCENARIOS["cluster-existing-secrets"])
    cluster = r.relay_toml["cluster"]
    assert cluster["dns_name"] == f"sse-relay-peers.{NAMESPACE}.svc.k8s.example"
    assert cluster["peer_listen"] == "0.0.0.0:7443"
    assert cluster["refresh_ms"] == 2000
    assert cluster["peer_name"] == "relay-mesh.internal"
    (svc,) = [s for s in r.of_kind("Service") if s["metadata"]["name"] == "sse-relay-peers"]
    assert svc["spec"]["ports"][0]["port"] == 7443
    assert r.relay_env["SSE_RELAY__CLUSTER__SELF"] == "$(POD_IP):7443"


def test_self_is_the_pod_ip_through_the_downward_api(render):
    env = env_list(render(CLUSTER_SCENARIOS["cluster-generated"]))
    names = [e["name"] for e in env]
    pod_ip = env[names.index("POD_IP")]
    assert pod_ip["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    own = env[names.index("SSE_RELAY__CLUSTER__SELF")]
    assert own["value"] == "$(POD_IP):9443"
    # Kubernetes expands $(VAR) only from variables listed before it.
    assert names.index("POD_IP") < names.index("SSE_RELAY__CLUSTER__SELF")


@pytest.mark.parametrize("scenario", list(CLUSTER_SCENARIOS))
def test_cluster_keys_are_also_forced_by_environment(render, scenario):
    """As the chart-owned listener keys: the environment wins over the file, so the keys hold
    with configToml too; with `config` the file says the same."""
    r = render(CLUSTER_SCENARIOS[scenario])
    by_env = {
        name.removeprefix("SSE_RELAY__CLUSTER__").lower(): as_relay_reads_it(value)
        for name, value in r.relay_env.items()
        if name.startswith("SSE_RELAY__CLUSTER__") and name != "SSE_RELAY__CLUSTER__SELF"
    }
    assert set(by_env) == {"dns_name", "peer_listen", "refresh_ms", "ca_file", "cert_file",
                           "key_file", "token_file", "peer_name"}
    if r.values["configToml"]:
        assert "cluster" not in r.relay_toml
    else:
        assert r.relay_toml["cluster"] == by_env


def test_a_peer_name_that_reads_as_toml_still_arrives_as_a_string(render):
    r = render({"cluster": {"enabled": True, "peerName": "inf"}})
    assert as_relay_reads_it(r.relay_env["SSE_RELAY__CLUSTER__PEER_NAME"]) == "inf"


# --------------------------------------------------------------------------------------------
# NetworkPolicy


def peer_rules(policy: dict, port: int) -> list[dict]:
    return [rule for rule in policy["spec"]["ingress"]
            if any(p.get("port") == port for p in rule.get("ports", []))]


@pytest.mark.parametrize("scenario", list(CLUSTER_SCENARIOS))
def test_network_policy_admits_the_peer_port_only_from_the_release(render, scenario):
    r = render(CLUSTER_SCENARIOS[scenario])
    policy = peer_policy(r)
    labels = selector_labels(r)
    assert policy["spec"]["podSelector"] == {"matchLabels": labels}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    peer_port = r.values["cluster"]["peerPort"]
    (rule,) = peer_rules(policy, peer_port)
    # Only pods of this release, in this namespace: no namespaceSelector, no ipBlock.
    assert rule["from"] == [{"podSelector": {"matchLabels": labels}}]
    assert rule["ports"] == [{"port": peer_port, "protocol": "TCP"}]
    # No rule opens every port (a rule without `ports` would admit the peer port from anyone).
    assert all(rule.get("ports") for rule in policy["spec"]["ingress"])


@pytest.mark.parametrize("scenario", list(CLUSTER_SCENARIOS))
def test_network_policy_keeps_the_other_ports_open(render, scenario):
    r = render(CLUSTER_SCENARIOS[scenario])
    policy = peer_policy(r)
    v = r.values
    open_ports = {(p["port"], p["protocol"]) for rule in policy["spec"]["ingress"]
                  if "from" not in rule for p in rule["ports"]}
    expected = {(v["ports"]["https"], "TCP")}
    if not v["admin"]["networkPolicy"]["enabled"]:
        # With its own policy on, the admin port is left to that policy (policies add up).
        expected.add((v["ports"]["admin"], "TCP"))
    if v["ports"]["plaintext"]["enabled"]:
        expected.add((v["ports"]["plaintext"]["port"], "TCP"))
    if v["sidecar"]["enabled"]:
        expected |= {(p["containerPort"], p.get("protocol", "TCP"))
                     for c in v["sidecar"]["appContainers"] for p in c.get("ports", [])}
    assert open_ports == expected
    assert (v["cluster"]["peerPort"], "TCP") not in open_ports


def test_network_policy_options(render):
    extra = [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 8081}]}]
    r = render({"cluster": {"enabled": True, "networkPolicy": {"allowOtherPorts": False, "extraIngress": extra}}})
    ingress = peer_policy(r)["spec"]["ingress"]
    assert len(ingress) == 2 and peer_rules({"spec": {"ingress": ingress}}, 9443) == [ingress[0]]
    assert ingress[1] == extra[0]
    assert peer_policies(render({"cluster": {"enabled": True, "networkPolicy": {"enabled": False}}})) == []


# --------------------------------------------------------------------------------------------
# Secrets and their mount


def cluster_volume(r) -> dict:
    (vol,) = [v for v in r.pod_spec["volumes"] if v["name"] == "cluster"]
    return vol


def test_generated_secrets_are_mounted_as_one_directory(render):
    r = render(CLUSTER_SCENARIOS["cluster-generated"])
    secrets = secrets_by_name(r)
    assert set(secrets) == {"sse-relay-cluster-token", "sse-relay-cluster-tls"}
    token = decoded(secrets["sse-relay-cluster-token"])["token"].decode()
    assert re.fullmatch(r"[A-Za-z0-9]{48}", token)
    tls = secrets["sse-relay-cluster-tls"]
    assert tls["type"] == "kubernetes.io/tls" and set(tls["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    sources = cluster_volume(r)["projected"]["sources"]
    assert [s["secret"]["name"] for s in sources] == ["sse-relay-cluster-tls", "sse-relay-cluster-token"]
    assert [i["path"] for s in sources for i in s["secret"]["items"]] == ["ca.crt", "tls.crt", "tls.key", "token"]
    (mount,) = [m for m in r.relay_container["volumeMounts"] if m["name"] == "cluster"]
    # A directory, never subPath: the kubelet's ..data swap must reach the relay.
    assert mount == {"name": "cluster", "mountPath": CLUSTER_DIR, "readOnly": True}


def test_a_given_token_is_used(render):
    r = render({"cluster": {"enabled": True, "token": "s3cret-from-values"}})
    assert decoded(secrets_by_name(r)["sse-relay-cluster-token"])["token"] == b"s3cret-from-values"


def test_existing_secrets_are_used_when_named(render):
    r = render(CLUSTER_SCENARIOS["cluster-existing-secrets"])
    assert r.of_kind("Secret") == []
    sources = cluster_volume(r)["projected"]["sources"]
    assert [s["secret"]["name"] for s in sources] == ["peer-tls", "peer-token"]
    assert [i["key"] for i in sources[0]["secret"]["items"]] == ["ca.crt", "tls.crt", "tls.key"]
    assert sources[1]["secret"]["items"] == [{"key": "token", "path": "token"}]


def test_only_one_existing_secret_named_renders_the_other(render):
    r = render({"cluster": {"enabled": True, "existingTlsSecret": "peer-tls"}})
    assert set(secrets_by_name(r)) == {"sse-relay-cluster-token"}
    r = render({"cluster": {"enabled": True, "existingTokenSecret": "peer-token"}})
    assert set(secrets_by_name(r)) == {"sse-relay-cluster-tls"}


def write_peer_files(r, directory: Path) -> Path:
    for secret in r.of_kind("Secret"):
        for key, data in decoded(secret).items():
            (directory / key).write_bytes(data)
    return directory


def test_generated_certificate_names_the_peer_name_and_serves_both_ends(render, tmp_path):
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to inspect the generated certificate"
    r = render({"cluster": {"enabled": True, "peerName": "relay-mesh.internal"}})
    d = write_peer_files(r, tmp_path)
    verify = subprocess.run([openssl, "verify", "-CAfile", str(d / "ca.crt"), str(d / "tls.crt")],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    text = subprocess.run([openssl, "x509", "-in", str(d / "tls.crt"), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:relay-mesh.internal" in text
    # Mutual TLS: every relay is a server to some peers and a client of others.
    assert "TLS Web Server Authentication" in text and "TLS Web Client Authentication" in text
    assert r.relay_toml["cluster"]["peer_name"] == "relay-mesh.internal"
    secret = secrets_by_name(r)["sse-relay-cluster-tls"]
    assert secret["metadata"]["annotations"]["sse-relay/peer-name"] == "relay-mesh.internal"


# --------------------------------------------------------------------------------------------
# Refused values


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cluster": {"enabled": True, "peerPort": 8443}}, "cluster.peerPort=8443 is already used"),
        ({"cluster": {"enabled": True, "peerPort": 8080}, "ports": {"plaintext": {"enabled": True}}},
         "cluster.peerPort=8080 is already used"),
        ({"cluster": {"enabled": True, "token": "t", "existingTokenSecret": "s"}}, "are exclusive"),
    ],
)
def test_conflicting_values_fail_the_render(chart, values, message):
    with pytest.raises(helm.HelmRenderError, match=message):
        chart.render(values, name="x")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"cluster": {"enable": True}}, "'enable' not allowed"),
        ({"cluster": {"networkPolicy": {"enable": False}}}, "'enable' not allowed"),
        ({"cluster": {"peerName": "Not A Name"}}, "peerName"),
        ({"cluster": {"peerPort": 70000}}, "peerPort"),
    ],
)
def test_schema_refuses_bad_cluster_values(chart, values, message):
    with pytest.raises(helm.HelmValuesError, match=message):
        chart.render(values, name="x")


# --------------------------------------------------------------------------------------------
# Opt-in: the relay's own check-config accepts the rendered cluster config (file + env)

RELAY_BIN = os.environ.get("SSE_RELAY_BIN", "")


@pytest.fixture(scope="session")
def peer_files(render, tmp_path_factory):
    """CA, certificate, key and token as the chart generates them, standing in for the Secrets
    (also for the named existing ones) and, the certificate, for the server's TLS Secret."""
    d = write_peer_files(render(CLUSTER_SCENARIOS["cluster-generated"]), tmp_path_factory.mktemp("peer"))
    assert sorted(p.name for p in d.iterdir()) == ["ca.crt", "tls.crt", "tls.key", "token"]
    return d


def check_config(r, peer_files: Path, tmp_path: Path, *, expand_pod_ip: bool = True):
    paths = {CLUSTER_DIR: str(peer_files), SERVER_TLS_DIR: str(peer_files)}

    def local(text: str) -> str:
        for mounted, here in paths.items():
            text = text.replace(mounted, here)
        return text

    config = tmp_path / "relay.toml"
    config.write_text(local(r.relay_toml_text))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSE_RELAY")}
    for name, value in r.relay_env.items():
        if name.startswith("SSE_RELAY") and value is not None:
            if name == "SSE_RELAY__SERVER__DEV_CERT_DIR":
                value = str(tmp_path / "dev-cert")
            if expand_pod_ip:  # what the kubelet does with $(POD_IP)
                value = value.replace("$(POD_IP)", POD_IP)
            env[name] = local(value)
    return subprocess.run([RELAY_BIN, "check-config", str(config)], env=env,
                          capture_output=True, text=True, timeout=60)


needs_relay = pytest.mark.skipif(
    not RELAY_BIN, reason="opt-in: set SSE_RELAY_BIN to run the relay's check-config"
)


@needs_relay
@pytest.mark.parametrize("scenario", list(CLUSTER_SCENARIOS))
def test_relay_check_config_accepts_the_cluster_config(render, scenario, peer_files, tmp_path):
    done = check_config(render(CLUSTER_SCENARIOS[scenario]), peer_files, tmp_path)
    assert done.returncode == 0, f"check-config exit {done.returncode}:\n{done.stdout}{done.stderr}"


@needs_relay
def test_relay_check_config_reads_self_from_the_environment(render, peer_files, tmp_path):
    """Control for the test above: unexpanded, $(POD_IP) is no socket address, so check-config
    did read the chart's SSE_RELAY__CLUSTER__SELF."""
    done = check_config(render(CLUSTER_SCENARIOS["cluster-generated"]), peer_files, tmp_path,
                        expand_pod_ip=False)
    assert done.returncode == 2 and "cluster.self" in done.stderr
