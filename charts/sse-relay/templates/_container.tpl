{{- /*
The relay container. In sidecar mode it is an initContainers entry with restartPolicy: Always
(a native sidecar: started before the app containers, kept running beside them, stopped after
them); otherwise it is the pod's only main container.
*/ -}}
{{- define "sse-relay.container" -}}
- name: sse-relay
  image: {{ include "sse-relay.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if .Values.sidecar.enabled }}
  restartPolicy: Always
  {{- end }}
  args:
    - --config
    - {{ include "sse-relay.configPath" . }}
  ports:
    - name: https
      containerPort: {{ .Values.ports.https }}
      protocol: TCP
    - name: admin
      containerPort: {{ .Values.ports.admin }}
      protocol: TCP
    {{- if .Values.ports.plaintext.enabled }}
    - name: http
      containerPort: {{ .Values.ports.plaintext.port }}
      protocol: TCP
    {{- end }}
    {{- if .Values.cluster.enabled }}
    - name: peer
      containerPort: {{ .Values.cluster.peerPort }}
      protocol: TCP
    {{- end }}
  env:
    - name: SSE_RELAY_LOG
      value: {{ .Values.log.level | quote }}
    - name: SSE_RELAY_LOG_FORMAT
      value: {{ .Values.log.format | quote }}
    {{- /* The chart-owned keys, forced over the file (and over the image's ENV defaults). */}}
    {{- $owned := include "sse-relay.ownedConfig" . | fromJson }}
    {{- range $section := list "server" "admin" }}
    {{- range $key, $value := get $owned $section }}
    - name: {{ printf "SSE_RELAY__%s__%s" ($section | upper) ($key | upper) }}
      value: {{ $value | quote }}
    {{- end }}
    {{- end }}
    {{- if .Values.cluster.enabled }}
    {{- /* This pod's peer address: only the pod knows its IP. POD_IP must come first, for
    Kubernetes expands $(POD_IP) only from variables defined earlier in the list. */}}
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    - name: SSE_RELAY__CLUSTER__SELF
      value: {{ printf "$(POD_IP):%d" (int .Values.cluster.peerPort) | quote }}
    {{- range $key, $value := $owned.cluster }}
    - name: {{ printf "SSE_RELAY__CLUSTER__%s" ($key | upper) }}
      value: {{ include "sse-relay.clusterEnvValue" (list $key $value) | quote }}
    {{- end }}
    {{- end }}
    {{- with .Values.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.envFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ .Values.ports.admin }}
      scheme: HTTP
    {{- toYaml .Values.probes.liveness | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ .Values.ports.admin }}
      scheme: HTTP
    {{- toYaml .Values.probes.readiness | nindent 4 }}
  {{- if gt (int .Values.preStopSleepSeconds) 0 }}
  lifecycle:
    preStop:
      sleep:
        seconds: {{ int .Values.preStopSleepSeconds }}
  {{- end }}
  {{- with .Values.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    # relay.toml alone (subPath is fine here: a config change rolls the pods through the
    # checksum/config annotation; the relay does not reload its config file).
    - name: config
      mountPath: {{ include "sse-relay.configPath" . }}
      subPath: relay.toml
      readOnly: true
    {{- if .Values.tls.existingSecret }}
    # The TLS Secret as a DIRECTORY, never subPath: the kubelet swaps the `..data` symlink on
    # rotation and the relay watches the files and hot-reloads them.
    - name: tls
      mountPath: {{ include "sse-relay.tlsDir" . }}
      readOnly: true
    {{- end }}
    {{- if .Values.cluster.enabled }}
    # The peer CA, certificate, key and token: a directory too, so rotations reach the relay.
    - name: cluster
      mountPath: {{ include "sse-relay.clusterDir" . }}
      readOnly: true
    {{- end }}
    {{- if .Values.admin.token.existingSecret }}
    # The admin token (admin.token_file), read once at start.
    - name: admin-token
      mountPath: {{ include "sse-relay.adminTokenDir" . }}
      readOnly: true
    {{- end }}
    - name: tmp
      mountPath: /tmp
    {{- with .Values.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}
