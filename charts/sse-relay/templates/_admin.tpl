{{- /*
The admin port (`admin.*` values): the NetworkPolicy that limits who reaches it, and the
Secret whose token the relay then requires on /topics, /stats, /history and /tail (relay
admin.token_file).
*/ -}}

{{- /* Where the pod sees the admin token Secret (a directory). */ -}}
{{- define "sse-relay.adminTokenDir" -}}/etc/sse-relay/admin{{- end -}}

{{- /* admin.token_file as the chart sets it, when admin.token.existingSecret is given. */ -}}
{{- define "sse-relay.adminTokenFile" -}}{{ include "sse-relay.adminTokenDir" . }}/token{{- end -}}

{{- /* A NetworkPolicy's name is a DNS subdomain, but keep it a label like the others. */ -}}
{{- define "sse-relay.adminPolicyName" -}}
{{- printf "%s-admin" (include "sse-relay.fullname" . | trunc 57 | trimSuffix "-") -}}
{{- end -}}

{{- /*
The relay's ports that are open to every source whatever a NetworkPolicy of the chart
restricts: https, plaintext (when enabled) and, in sidecar mode, every port the app containers
declare. Never the admin or the peer port. As JSON (a list of NetworkPolicyPort).
*/ -}}
{{- define "sse-relay.publicPorts" -}}
{{- $ports := list (dict "port" (int .Values.ports.https) "protocol" "TCP") -}}
{{- if .Values.ports.plaintext.enabled -}}
{{- $ports = append $ports (dict "port" (int .Values.ports.plaintext.port) "protocol" "TCP") -}}
{{- end -}}
{{- if .Values.sidecar.enabled -}}
{{- range $c := tpl (toYaml .Values.sidecar.appContainers) . | fromYamlArray -}}
{{- range $p := $c.ports | default list -}}
{{- $ports = append $ports (dict "port" (int $p.containerPort) "protocol" ($p.protocol | default "TCP")) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $ports -}}
{{- end -}}
