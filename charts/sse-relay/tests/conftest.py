"""Rendering helpers for the chart tests: Helm's Go SDK through helm-python-sdk, offline.

Every scenario is a set of values rendered exactly as `helm template -f FILE` would: the
ci/*.yaml files (parsed by Helm's own values parser) plus a few inline variants for options the
CI files leave off.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

CHART_DIR = Path(__file__).resolve().parents[1]
CI_DIR = CHART_DIR / "ci"
RELEASE = "sse-relay"
NAMESPACE = "edge"
RELAY = "sse-relay"  # the relay container's name

# Inline scenarios for options the ci/ files leave off.
INLINE_SCENARIOS: dict[str, dict[str, Any]] = {
    "inline-daemonset": {
        "kind": "DaemonSet",
        "tls": {"existingSecret": "edge-tls"},
        "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
    },
    "inline-raw-config-toml": {
        "tls": {"existingSecret": "edge-tls"},
        "configToml": (
            "[server]\n"
            'listen = "127.0.0.1:8443"\n'
            "drain_delay_ms = 8000\n"
            "drain_timeout_ms = 45000\n"
            "\n"
            "[[route]]\n"
            'path = "/live/{topic}"\n'
            'upstream = "http://origin:8080/live/{topic}"\n'
        ),
    },
    "inline-proxy-protocol": {
        "tls": {"existingSecret": "edge-tls"},
        "ports": {"plaintext": {"enabled": True, "port": 8080}},
        "proxyProtocol": {"enabled": True, "from": ["10.0.0.0/8", "fd00::/8"]},
    },
    "inline-plaintext-prestop": {
        "ports": {"plaintext": {"enabled": True, "port": 8080}},
        "preStopSleepSeconds": 3,
        "config": {"server": {"drain_delay_ms": 2000, "drain_timeout_ms": 20000}},
        "log": {"format": "text"},
    },
}


def ci_files() -> list[Path]:
    return sorted(CI_DIR.glob("*.yaml"))


def scenario_values(name: str) -> dict[str, Any]:
    """User values of a scenario: a ci/ file name (parsed as `-f` parses it) or an inline one."""
    if name in INLINE_SCENARIOS:
        return INLINE_SCENARIOS[name]
    return helm.values_from_yaml((CI_DIR / name).read_text())


def all_scenarios() -> list[str]:
    return [p.name for p in ci_files()] + list(INLINE_SCENARIOS)


@dataclass
class Rendered:
    """One rendering of the chart: the manifests by template, parsed, and the merged values."""

    manifests: dict[str, str]
    values: dict[str, Any]

    @property
    def docs(self) -> list[dict[str, Any]]:
        out = []
        for template, text in sorted(self.manifests.items()):
            if template.endswith("NOTES.txt"):
                continue
            out.extend(d for d in yaml.safe_load_all(text) if d)
        return out

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.of_kind(kind)
        assert len(found) == 1, f"expected one {kind}, found {len(found)}"
        return found[0]

    @property
    def workload(self) -> dict[str, Any]:
        found = [d for d in self.docs if d["kind"] in ("Deployment", "DaemonSet")]
        assert len(found) == 1, f"expected one workload, found {[d['kind'] for d in found]}"
        return found[0]

    @property
    def pod_spec(self) -> dict[str, Any]:
        return self.workload["spec"]["template"]["spec"]

    @property
    def relay_container(self) -> dict[str, Any]:
        spec = self.pod_spec
        found = [
            c
            for c in spec.get("containers", []) + spec.get("initContainers", [])
            if c["name"] == RELAY
        ]
        assert len(found) == 1, f"expected one {RELAY} container, found {len(found)}"
        return found[0]

    @property
    def config_map(self) -> dict[str, Any]:
        found = [
            d
            for d in self.of_kind("ConfigMap")
            if "relay.toml" in d.get("data", {})
        ]
        assert len(found) == 1
        return found[0]

    @property
    def relay_toml_text(self) -> str:
        return self.config_map["data"]["relay.toml"]

    @property
    def relay_toml(self) -> dict[str, Any]:
        return tomllib.loads(self.relay_toml_text)

    @property
    def relay_env(self) -> dict[str, str]:
        return {e["name"]: e.get("value") for e in self.relay_container.get("env", [])}


@pytest.fixture(scope="session")
def chart():
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart):
    """render(values) -> Rendered, cached per distinct values."""

    @cache
    def _render(frozen: str) -> Rendered:
        values = yaml.safe_load(frozen)
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        return Rendered(manifests=manifests, values=chart.merge_values(values))

    def render_values(values: dict[str, Any] | None = None) -> Rendered:
        return _render(yaml.safe_dump(values or {}, sort_keys=True))

    return render_values


@pytest.fixture(scope="session")
def render_scenario(render):
    return lambda name: render(scenario_values(name))


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
