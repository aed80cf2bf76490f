"""`proxyProtocol` values: rendered into relay.toml as server.proxy_protocol and
server.proxy_protocol_from, off by default, refused where they could not take effect."""

from __future__ import annotations

import helm_python as helm
import pytest

from conftest import INLINE_SCENARIOS


def test_off_by_default_leaves_the_keys_out(render):
    server = render().relay_toml["server"]
    assert "proxy_protocol" not in server
    assert "proxy_protocol_from" not in server


def test_enabled_renders_both_keys_into_relay_toml(render):
    r = render(INLINE_SCENARIOS["inline-proxy-protocol"])
    server = r.relay_toml["server"]
    assert server["proxy_protocol"] is True
    assert server["proxy_protocol_from"] == ["10.0.0.0/8", "fd00::/8"]
    # Lists are not set by environment (the chart-owned keys are).
    assert not any("PROXY" in name for name in r.relay_env)


def test_enabled_without_from_allows_any_peer(render):
    server = render({"proxyProtocol": {"enabled": True}}).relay_toml["server"]
    assert server["proxy_protocol"] is True
    assert server["proxy_protocol_from"] == []


def test_from_without_enabled_fails_the_render(chart):
    with pytest.raises(helm.HelmRenderError, match="proxyProtocol.from needs proxyProtocol.enabled"):
        chart.render({"proxyProtocol": {"from": ["10.0.0.0/8"]}}, name="x")


def test_enabled_with_config_toml_fails_the_render(chart):
    values = {
        "proxyProtocol": {"enabled": True},
        "configToml": INLINE_SCENARIOS["inline-raw-config-toml"]["configToml"],
    }
    with pytest.raises(helm.HelmRenderError, match="not applied to configToml"):
        chart.render(values, name="x")


def test_schema_refuses_a_misspelled_key(chart):
    with pytest.raises(helm.HelmValuesError, match="'enable' not allowed"):
        chart.render({"proxyProtocol": {"enable": True}}, name="x")
