{{- define "sse-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sse-relay.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sse-relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sse-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sse-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "sse-relay.labels" -}}
helm.sh/chart: {{ include "sse-relay.chart" . }}
{{ include "sse-relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: sse-relay
{{- end -}}

{{- define "sse-relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sse-relay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sse-relay.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- /* Where the pod sees its files. */ -}}
{{- define "sse-relay.configPath" -}}/etc/sse-relay/relay.toml{{- end -}}
{{- define "sse-relay.tlsDir" -}}/etc/sse-relay/tls{{- end -}}
{{- define "sse-relay.devCertDir" -}}/tmp/sse-relay-dev{{- end -}}

{{- /*
The chart-owned config keys, as a nested dict: they must agree with the container ports,
probes and mounts the chart renders, so they are not left to `config`. With cluster.enabled
they include the `[cluster]` keys (sse-relay.clusterConfig; `self` is set by environment only).
*/ -}}
{{- define "sse-relay.ownedConfig" -}}
{{- $server := dict "listen" (printf "%s:%d" .Values.listenHost (int .Values.ports.https)) -}}
{{- if .Values.ports.plaintext.enabled -}}
{{- $_ := set $server "plaintext_listen" (printf "%s:%d" .Values.listenHost (int .Values.ports.plaintext.port)) -}}
{{- end -}}
{{- if .Values.tls.existingSecret -}}
{{- $_ := set $server "tls_cert" (printf "%s/%s" (include "sse-relay.tlsDir" .) .Values.tls.certFile) -}}
{{- $_ := set $server "tls_key" (printf "%s/%s" (include "sse-relay.tlsDir" .) .Values.tls.keyFile) -}}
{{- else -}}
{{- $_ := set $server "dev_cert_dir" (include "sse-relay.devCertDir" .) -}}
{{- end -}}
{{- $admin := dict "listen" (printf "%s:%d" .Values.listenHost (int .Values.ports.admin)) -}}
{{- if .Values.admin.token.existingSecret -}}
{{- $_ := set $admin "token_file" (include "sse-relay.adminTokenFile" .) -}}
{{- end -}}
{{- $owned := dict "server" $server "admin" $admin -}}
{{- if .Values.cluster.enabled -}}
{{- $_ := set $owned "cluster" (include "sse-relay.clusterConfig" . | fromJson) -}}
{{- end -}}
{{- toJson $owned -}}
{{- end -}}

{{- /*
`proxyProtocol` as relay.toml keys (JSON; `{}` when off). Lists stay lists, so this is
rendered into the file, not set by environment like the chart-owned keys.
*/ -}}
{{- define "sse-relay.proxyProtocolConfig" -}}
{{- if .Values.proxyProtocol.enabled -}}
{{- toJson (dict "server" (dict "proxy_protocol" true "proxy_protocol_from" (.Values.proxyProtocol.from | default list))) -}}
{{- else -}}
{}
{{- end -}}
{{- end -}}

{{- /*
The configuration the relay will run with, as JSON: the parsed configToml, or `config`
with the chart-owned keys laid over it.
*/ -}}
{{- define "sse-relay.effectiveConfig" -}}
{{- if .Values.configToml -}}
{{- $parsed := fromToml .Values.configToml -}}
{{- if hasKey $parsed "Error" -}}
{{- fail (printf "configToml is not valid TOML: %s" (get $parsed "Error")) -}}
{{- end -}}
{{- toJson $parsed -}}
{{- else -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $cfg = mustMergeOverwrite $cfg (include "sse-relay.proxyProtocolConfig" . | fromJson) -}}
{{- $owned := include "sse-relay.ownedConfig" . | fromJson -}}
{{- toJson (mustMergeOverwrite $cfg $owned) -}}
{{- end -}}
{{- end -}}

{{- /*
relay.toml exactly as the ConfigMap carries it (one trailing newline, as a YAML `|` block
yields it back), so its sha256 in the pod annotation matches the ConfigMap's data.
*/ -}}
{{- define "sse-relay.relayTomlData" -}}
{{- regexReplaceAll "\\s+$" (include "sse-relay.relayToml" .) "" }}
{{ end -}}

{{- define "sse-relay.relayToml" -}}
{{- if .Values.configToml -}}
{{- .Values.configToml -}}
{{- else -}}
{{- $cfg := include "sse-relay.effectiveConfig" . | fromJson -}}
{{- if not $cfg.route -}}
{{- fail "config.route must list at least one route (path + upstream)" -}}
{{- end -}}
# relay.toml rendered by the sse-relay Helm chart from the `config` values.
# Chart-owned keys (listeners, TLS paths, dev_cert_dir) are also set by environment.

{{ include "sse-relay.toml.table" (dict "prefix" "" "table" $cfg) | trim }}
{{ end -}}
{{- end -}}

{{- /*
Termination grace period. The relay exits at the latest drain_timeout_ms after SIGTERM and
keeps serving drain_delay_ms first; a preStop sleep runs before the signal, and in sidecar
mode the app containers stop before the relay is signalled. Missing keys take the relay's
defaults (5000 / 30000).
*/ -}}
{{- define "sse-relay.minGraceMs" -}}
{{- $cfg := include "sse-relay.effectiveConfig" . | fromJson -}}
{{- $server := $cfg.server | default dict -}}
{{- $delay := $server.drain_delay_ms | default 5000 | int64 -}}
{{- $timeout := $server.drain_timeout_ms | default 30000 | int64 -}}
{{- $ms := add $delay $timeout (mul (int64 .Values.preStopSleepSeconds) 1000) -}}
{{- if .Values.sidecar.enabled -}}
{{- $ms = add $ms (mul (int64 .Values.sidecar.appTerminationSeconds) 1000) -}}
{{- end -}}
{{- $ms -}}
{{- end -}}

{{- define "sse-relay.terminationGracePeriodSeconds" -}}
{{- $minMs := include "sse-relay.minGraceMs" . | int64 -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add (div (add $minMs 999) 1000) (int64 .Values.terminationGraceExtraSeconds) -}}
{{- else -}}
{{- $given := int64 .Values.terminationGracePeriodSeconds -}}
{{- if le (mul $given 1000) $minMs -}}
{{- fail (printf "terminationGracePeriodSeconds=%d must exceed the drain (drain_delay_ms + drain_timeout_ms + preStopSleepSeconds%s = %d ms)" $given (ternary " + sidecar.appTerminationSeconds" "" .Values.sidecar.enabled) $minMs) -}}
{{- end -}}
{{- $given -}}
{{- end -}}
{{- end -}}

{{- define "sse-relay.validate" -}}
{{- if not (has .Values.kind (list "Deployment" "DaemonSet")) -}}
{{- fail (printf "kind must be Deployment or DaemonSet, not %q" .Values.kind) -}}
{{- end -}}
{{- if and .Values.sidecar.enabled (not .Values.sidecar.appContainers) -}}
{{- fail "sidecar.enabled needs sidecar.appContainers (the application's containers)" -}}
{{- end -}}
{{- if and .Values.proxyProtocol.from (not .Values.proxyProtocol.enabled) -}}
{{- fail "proxyProtocol.from needs proxyProtocol.enabled" -}}
{{- end -}}
{{- if and .Values.proxyProtocol.enabled .Values.configToml -}}
{{- fail "proxyProtocol.enabled is not applied to configToml: set server.proxy_protocol (and proxy_protocol_from) there" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (ne .Values.kind "Deployment") -}}
{{- fail "autoscaling.enabled needs kind: Deployment (a DaemonSet runs one pod per node)" -}}
{{- end -}}
{{- include "sse-relay.clusterValidate" . -}}
{{- if and .Values.autoscaling.enabled (not (or .Values.autoscaling.cpu.enabled .Values.autoscaling.subscribers.enabled .Values.autoscaling.extraMetrics)) -}}
{{- fail "autoscaling.enabled needs at least one metric (cpu, subscribers or extraMetrics)" -}}
{{- end -}}
{{- end -}}
