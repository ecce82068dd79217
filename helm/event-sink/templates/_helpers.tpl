{{/* Names, labels and the values derived from the connector's config, in one place. */}}

{{- define "event-sink.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release name plus chart name, unless the release name already contains it; 63 chars max (DNS label). */}}
{{- define "event-sink.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "event-sink.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: never change across upgrades (a Deployment's selector is immutable). */}}
{{- define "event-sink.selectorLabels" -}}
app.kubernetes.io/name: {{ include "event-sink.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "event-sink.labels" -}}
helm.sh/chart: {{ include "event-sink.chart" . }}
{{ include "event-sink.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: event-sink
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "event-sink.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "event-sink.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the token (and the SASL password): the user's or the chart's. */}}
{{- define "event-sink.secretName" -}}
{{- default (include "event-sink.fullname" .) .Values.auth.existingSecret }}
{{- end }}

{{- define "event-sink.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Where the token Secret is mounted; http.token_file points at "token" in it. */}}
{{- define "event-sink.tokenDir" -}}/var/run/secrets/event-sink{{- end }}

{{/* The connector serves /metrics, /healthz and /readyz on config.metrics.port (default 9400). */}}
{{- define "event-sink.metricsPort" -}}
{{- dig "metrics" "port" 9400 .Values.config | int }}
{{- end }}

{{/*
The connector's config file: .Values.config verbatim, plus http.token_file, which the chart
owns because it mounts the token. Refuses what would put a secret in the ConfigMap or
contradict what the chart wires up.
*/}}
{{- define "event-sink.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $kafka := dig "kafka" dict $config }}
{{- $_ := required "config.kafka.bootstrap_servers is required (the brokers, e.g. kafka:9092)" $kafka.bootstrap_servers }}
{{- $_ := required "config.http.url is required (the event import API's full URL)" (dig "http" "url" "" $config) }}
{{- if hasKey (dig "http" dict $config) "token_file" }}
{{- fail "config.http.token_file is set by the chart: the token comes from auth.token or auth.existingSecret" }}
{{- end }}
{{- range $key, $_ := (dig "properties" dict $kafka) }}
{{- if regexMatch "(?i)password|secret" $key }}
{{- fail (printf "config.kafka.properties.%s would put a secret in the ConfigMap: use auth.kafkaSasl for sasl.password, kafkaTls for TLS files" $key) }}
{{- end }}
{{- end }}
{{- $http := dig "http" dict $config }}
{{- $_ := set $http "token_file" (printf "%s/token" (include "event-sink.tokenDir" .)) }}
{{- $_ := set $config "http" $http }}
{{- toYaml $config }}
{{- end }}

{{/* PromQL matchers selecting this release's series. */}}
{{- define "event-sink.alertSelector" -}}
{{- .Values.prometheusRule.selector | default (printf "job=%q, namespace=%q" (include "event-sink.fullname" .) .Release.Namespace) }}
{{- end }}

{{/*
Labels of the `helm test` pod: deliberately not the selector labels, or the Deployment's
ReplicaSet would adopt it and the Service would route to it.
*/}}
{{- define "event-sink.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "event-sink.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{- end }}
