"""The admin port (`admin.*` values): a NetworkPolicy, on by default, admits the admin port only
from the sources `admin.networkPolicy.from` lists (the relay's other ports stay open, the peer
port keeps its own policy), and `admin.token.existingSecret` mounts a token the relay requires
on /topics, /stats and / (relay admin.token_file).
"""

from __future__ import annotations

import os
import subprocess

import helm_python as helm
import kubernetes_validate
import pytest

from conftest import CHART_DIR, all_scenarios, scenario_values
from test_chart import K8S_VERSIONS, RELAY_BIN

TOKEN_DIR = "/etc/sse-relay/admin"
PROMETHEUS = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]

ADMIN_SCENARIOS: dict[str, dict] = {
    "admin-defaults": {},
    "admin-prometheus-and-token": {
        "tls": {"existingSecret": "edge-tls"},
        "admin": {"networkPolicy": {"from": PROMETHEUS}, "token": {"existingSecret": "relay-admin"}},
    },
    "admin-only-own-rules": {
        "ports": {"plaintext": {"enabled": True, "port": 8080}},
        "admin": {"networkPolicy": {"from": PROMETHEUS, "allowOtherPorts": False},
                  "token": {"existingSecret": "relay-admin", "key": "admin-token"}},
    },
    "admin-cluster-sidecar": {
        **scenario_values("sidecar-values.yaml"),
        "cluster": {"enabled": True},
        "admin": {"networkPolicy": {"from": PROMETHEUS}},
    },
}


def values_of(scenario: str) -> dict | None:
    if scenario in ADMIN_SCENARIOS:
        return ADMIN_SCENARIOS[scenario]
    return None if scenario == "chart-defaults" else scenario_values(scenario)


def admin_policies(r) -> list[dict]:
    return [p for p in r.of_kind("NetworkPolicy") if p["metadata"]["name"].endswith("-admin")]


def rules_for(r, port: int) -> list[dict]:
    """Every ingress rule, of every NetworkPolicy, that admits `port` (policies add up)."""
    return [rule for policy in r.of_kind("NetworkPolicy") for rule in policy["spec"]["ingress"]
            if any(p.get("port") == port for p in rule.get("ports", []))]


# --------------------------------------------------------------------------------------------
# Valid and lint-clean


@pytest.mark.parametrize("scenario", list(ADMIN_SCENARIOS))
@pytest.mark.parametrize("k8s", K8S_VERSIONS)
def test_admin_manifests_are_valid_kubernetes(render, scenario, k8s):
    problems = []
    for doc in render(ADMIN_SCENARIOS[scenario]).docs:
        try:
            kubernetes_validate.validate(doc, k8s, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{doc['kind']}/{doc['metadata']['name']}: {e.json_path}: {e.message}")
    assert problems == []


@pytest.mark.parametrize("scenario", list(ADMIN_SCENARIOS))
def test_admin_lint_is_clean_in_strict_mode(scenario):
    report = helm.lint(CHART_DIR, ADMIN_SCENARIOS[scenario], strict=True, kube_version="v" + K8S_VERSIONS[0])
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_values_schema_rejects_misspelled_admin_values():
    report = helm.lint(CHART_DIR, {"admin": {"networkPolicy": {"form": []}, "token": {"secret": "x"}}}, strict=True)
    text = " ".join(report["errors"])
    assert "form" in text and "secret" in text


# --------------------------------------------------------------------------------------------
# The NetworkPolicy


@pytest.mark.parametrize("scenario", ["chart-defaults"] + all_scenarios() + list(ADMIN_SCENARIOS))
def test_the_admin_port_is_admitted_only_from_the_listed_sources(render, scenario):
    r = render(values_of(scenario))
    (policy,) = admin_policies(r)
    assert policy["spec"]["podSelector"] == {"matchLabels": r.workload["spec"]["selector"]["matchLabels"]}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    listed = r.values["admin"]["networkPolicy"]["from"]
    admin_port = r.values["ports"]["admin"]
    admitting = rules_for(r, admin_port)
    # No rule of any policy admits it from everywhere (a rule without `from` would).
    assert [rule["from"] for rule in admitting] == ([listed] if listed else [])
    for rule in admitting:
        assert rule["ports"] == [{"port": admin_port, "protocol": "TCP"}]
    # Nor is any rule without `ports` (it would admit every port, the admin port included).
    assert all(rule.get("ports") for p in r.of_kind("NetworkPolicy") for rule in p["spec"]["ingress"])


@pytest.mark.parametrize("scenario", ["chart-defaults"] + all_scenarios() + list(ADMIN_SCENARIOS))
def test_the_relays_other_ports_stay_open_and_the_peer_port_keeps_its_policy(render, scenario):
    r = render(values_of(scenario))
    v = r.values
    (policy,) = admin_policies(r)
    open_ports = {(p["port"], p["protocol"]) for rule in policy["spec"]["ingress"]
                  if "from" not in rule for p in rule["ports"]}
    expected = {(v["ports"]["https"], "TCP")}
    if v["ports"]["plaintext"]["enabled"]:
        expected.add((v["ports"]["plaintext"]["port"], "TCP"))
    if v["sidecar"]["enabled"]:
        expected |= {(p["containerPort"], p.get("protocol", "TCP"))
                     for c in v["sidecar"]["appContainers"] for p in c.get("ports", [])}
    assert open_ports == (expected if v["admin"]["networkPolicy"]["allowOtherPorts"] else set())
    if v["cluster"]["enabled"]:
        (peer_rule,) = rules_for(r, v["cluster"]["peerPort"])
        assert peer_rule["from"] == [{"podSelector": {"matchLabels": r.workload["spec"]["selector"]["matchLabels"]}}]


def test_the_admin_policy_can_be_left_out(render):
    r = render({"admin": {"networkPolicy": {"enabled": False}}})
    assert r.of_kind("NetworkPolicy") == []
    # In cluster mode the peers policy then keeps the admin port open, as it was.
    r = render({"cluster": {"enabled": True}, "admin": {"networkPolicy": {"enabled": False}}})
    (rule,) = rules_for(r, 9090)
    assert "from" not in rule


def test_nothing_listed_and_nothing_else_open_is_an_empty_allow_list(render):
    r = render({"admin": {"networkPolicy": {"allowOtherPorts": False, "from": []}}})
    (policy,) = admin_policies(r)
    assert policy["spec"]["ingress"] == []


def test_the_notes_say_when_prometheus_cannot_reach_the_admin_port(render):
    notes = lambda r: next(t for name, t in r.manifests.items() if name.endswith("NOTES.txt"))
    closed = {"admin": {"networkPolicy": {"from": []}}}
    monitored = {"metrics": {"serviceMonitor": {"enabled": True}}, **closed}
    assert "cannot scrape" in notes(render(monitored))
    assert "admits no pod" in notes(render(closed))
    # By default the policy admits Prometheus pods, so nothing needs saying.
    assert "admits no pod" not in notes(render(None))
    assert "admits no pod" not in notes(render(scenario_values("servicemonitor-hpa-values.yaml")))


# --------------------------------------------------------------------------------------------
# The token Secret


def test_the_token_secret_is_mounted_and_named_in_admin_token_file(render):
    r = render(ADMIN_SCENARIOS["admin-only-own-rules"])
    (volume,) = [v for v in r.pod_spec["volumes"] if v["name"] == "admin-token"]
    assert volume["secret"] == {"secretName": "relay-admin", "defaultMode": 0o440,
                                "items": [{"key": "admin-token", "path": "token"}]}
    (mount,) = [m for m in r.relay_container["volumeMounts"] if m["name"] == "admin-token"]
    assert mount == {"name": "admin-token", "mountPath": TOKEN_DIR, "readOnly": True}
    assert r.relay_toml["admin"]["token_file"] == f"{TOKEN_DIR}/token"
    assert r.relay_env["SSE_RELAY__ADMIN__TOKEN_FILE"] == f"{TOKEN_DIR}/token"


@pytest.mark.parametrize("scenario", ["chart-defaults"] + all_scenarios())
def test_without_a_token_secret_nothing_is_mounted_or_set(render, scenario):
    values = None if scenario == "chart-defaults" else scenario_values(scenario)
    r = render(values)
    if r.values["admin"]["token"]["existingSecret"]:
        pytest.skip("this scenario names a token Secret")
    assert "admin-token" not in {v["name"] for v in r.pod_spec["volumes"]}
    assert "token_file" not in r.relay_toml.get("admin", {})
    assert "SSE_RELAY__ADMIN__TOKEN_FILE" not in r.relay_env


@pytest.mark.skipif(not RELAY_BIN, reason="opt-in: set SSE_RELAY_BIN to run the relay's check-config")
def test_relay_accepts_the_mounted_token_and_refuses_an_empty_one(render, tmp_path):
    r = render(ADMIN_SCENARIOS["admin-only-own-rules"])
    token = tmp_path / "token"
    config = tmp_path / "relay.toml"
    config.write_text(r.relay_toml_text.replace(TOKEN_DIR, str(tmp_path)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSE_RELAY")}
    for name, value in r.relay_env.items():
        if name.startswith("SSE_RELAY") and value is not None:
            env[name] = value.replace(TOKEN_DIR, str(tmp_path)).replace("/tmp/sse-relay-dev", str(tmp_path / "dev"))

    def check() -> subprocess.CompletedProcess:
        return subprocess.run([RELAY_BIN, "check-config", str(config)], env=env,
                              capture_output=True, text=True, timeout=60)

    token.write_text("s3cret\n")
    done = check()
    assert done.returncode == 0, done.stderr
    token.write_text("\n")
    done = check()
    assert done.returncode == 2 and "admin.token_file" in done.stderr and "empty" in done.stderr
