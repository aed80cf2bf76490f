{{- /*
A small TOML emitter for the structured `config:` values block.

Why not Helm's toToml: values files reach templates as float64, which toToml writes as
`5000.0`, and the relay's integer keys reject floats. Scalars here go through toRawJson, whose
output for strings, integers-held-in-float64, booleans and arrays of those is also valid TOML
(JSON string escapes, \uXXXX included, are TOML basic-string escapes; DEL, which JSON leaves
raw and TOML forbids, is escaped by hand).

Layout: a table's scalar keys first, then its sub-tables (`[a.b]`), then its arrays of
tables (`[[a.b]]`), keys sorted. A null value leaves the key out, so `--set config.x.y=null`
falls back to the relay's own default.
*/ -}}

{{- define "sse-relay.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toRawJson . | replace "\x7f" "\\u007f" }}{{- end -}}
{{- end -}}

{{- /* "true" when the value is a non-empty list whose items are all maps. */ -}}
{{- define "sse-relay.toml.isTableArray" -}}
{{- if and (kindIs "slice" .) (gt (len .) 0) -}}
{{- $all := true -}}
{{- range . -}}{{- if not (kindIs "map" .) -}}{{- $all = false -}}{{- end -}}{{- end -}}
{{- if $all -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{- /* Args: dict "prefix" "server." (or "" at the top) "table" <map>. Emits lines. */ -}}
{{- define "sse-relay.toml.table" -}}
{{- $prefix := .prefix -}}
{{- range $k, $v := .table -}}
{{- if and (not (kindIs "invalid" $v)) (not (kindIs "map" $v)) (not (include "sse-relay.toml.isTableArray" $v)) }}
{{ include "sse-relay.toml.key" $k }} = {{ toRawJson $v | replace "\x7f" "\\u007f" }}
{{- end -}}
{{- end -}}
{{- range $k, $v := .table -}}
{{- if kindIs "map" $v }}

[{{ $prefix }}{{ include "sse-relay.toml.key" $k }}]
{{- include "sse-relay.toml.table" (dict "prefix" (printf "%s%s." $prefix (include "sse-relay.toml.key" $k)) "table" $v) -}}
{{- end -}}
{{- end -}}
{{- range $k, $v := .table -}}
{{- if include "sse-relay.toml.isTableArray" $v -}}
{{- range $item := $v }}

[[{{ $prefix }}{{ include "sse-relay.toml.key" $k }}]]
{{- include "sse-relay.toml.table" (dict "prefix" (printf "%s%s." $prefix (include "sse-relay.toml.key" $k)) "table" $item) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
