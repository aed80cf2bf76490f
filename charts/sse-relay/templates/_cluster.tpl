{{- /*
Cluster mode (`cluster.enabled`): the relays of this release find each other through a
headless Service and talk to each other over mutual TLS on the peer port, with a shared bearer
token. Helpers for the names, paths and relay.toml keys used by the templates.
*/ -}}

{{- /* Where the pod sees the peer CA, certificate, key and token (one projected volume). */ -}}
{{- define "sse-relay.clusterDir" -}}/etc/sse-relay/cluster{{- end -}}

{{- /* A Service name is a DNS label (<= 63 characters): leave room for "-peers". */ -}}
{{- define "sse-relay.peersServiceName" -}}
{{- printf "%s-peers" (include "sse-relay.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{- define "sse-relay.clusterTlsSecretName" -}}
{{- .Values.cluster.existingTlsSecret | default (printf "%s-cluster-tls" (include "sse-relay.fullname" .)) -}}
{{- end -}}

{{- define "sse-relay.clusterTokenSecretName" -}}
{{- .Values.cluster.existingTokenSecret | default (printf "%s-cluster-token" (include "sse-relay.fullname" .)) -}}
{{- end -}}

{{- /*
The chart-owned `[cluster]` keys, as JSON, all but `self` (the pod IP is only known in the
pod: it is set by environment from the downward API, see _container.tpl).
*/ -}}
{{- define "sse-relay.clusterConfig" -}}
{{- $dir := include "sse-relay.clusterDir" . -}}
{{- $port := int .Values.cluster.peerPort -}}
{{- toJson (dict
  "dns_name" (printf "%s.%s.svc.%s" (include "sse-relay.peersServiceName" .) .Release.Namespace .Values.cluster.clusterDomain)
  "peer_listen" (printf "%s:%d" .Values.listenHost $port)
  "refresh_ms" (int64 .Values.cluster.refreshMs)
  "ca_file" (printf "%s/ca.crt" $dir)
  "cert_file" (printf "%s/tls.crt" $dir)
  "key_file" (printf "%s/tls.key" $dir)
  "token_file" (printf "%s/token" $dir)
  "peer_name" .Values.cluster.peerName) -}}
{{- end -}}

{{- /*
One `[cluster]` key as an SSE_RELAY__CLUSTER__* value. The relay reads such a value as TOML
when it parses as TOML, else as a string: numbers (float64 once they pass through JSON) are
printed as integers, and peer_name is given as a quoted TOML string so that a name such as
"inf" or "true" still arrives as a string.
Args: list key value.
*/ -}}
{{- define "sse-relay.clusterEnvValue" -}}
{{- $key := index . 0 -}}
{{- $value := index . 1 -}}
{{- if kindIs "float64" $value -}}
{{- int64 $value -}}
{{- else if eq $key "peer_name" -}}
{{- toJson $value -}}
{{- else -}}
{{- $value -}}
{{- end -}}
{{- end -}}

{{- /*
The ports that stay open to every source when the NetworkPolicy restricts the peer port: the
relay's public ones (sse-relay.publicPorts) and the admin port, unless the admin port's own
NetworkPolicy restricts it (policies add up: listing it here would open it to everyone). As
JSON (a list of NetworkPolicyPort).
*/ -}}
{{- define "sse-relay.clusterOpenPorts" -}}
{{- $ports := include "sse-relay.publicPorts" . | fromJsonArray -}}
{{- if not .Values.admin.networkPolicy.enabled -}}
{{- $ports = append $ports (dict "port" (int .Values.ports.admin) "protocol" "TCP") -}}
{{- end -}}
{{- toJson $ports -}}
{{- end -}}

{{- define "sse-relay.clusterValidate" -}}
{{- if .Values.cluster.enabled -}}
{{- $peer := int .Values.cluster.peerPort -}}
{{- $taken := list (int .Values.ports.https) (int .Values.ports.admin) -}}
{{- if .Values.ports.plaintext.enabled -}}
{{- $taken = append $taken (int .Values.ports.plaintext.port) -}}
{{- end -}}
{{- if has $peer $taken -}}
{{- fail (printf "cluster.peerPort=%d is already used by ports.https, ports.admin or ports.plaintext" $peer) -}}
{{- end -}}
{{- if and .Values.cluster.token .Values.cluster.existingTokenSecret -}}
{{- fail "cluster.token and cluster.existingTokenSecret are exclusive: give one" -}}
{{- end -}}
{{- end -}}
{{- end -}}
