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
{{- if $config.routes }}
{{- include "event-sink.routes" (dict "config" $config "Values" .Values) }}
{{- else if .Values.routeSecrets }}
{{- fail "routeSecrets is set but config.routes is not" }}
{{- end }}
{{- include "event-sink.checkRegistry" . }}
{{- with .Values.registry.url }}
{{- $source := dig "source" dict $config }}
{{- $_ := set $source "schema_registry" (merge (dict "url" .) (dig "schema_registry" dict $source)) }}
{{- $_ := set $config "source" $source }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* Where routeSecrets are mounted: <dir>/<route>/token/token and <dir>/<route>/registry/<file>. */}}
{{- define "event-sink.routeSecretsDir" -}}/var/run/secrets/event-sink-routes{{- end }}

{{/*
config.routes (each route its own topics, source, mapping, http): drops the chart's default
kafka.topics and source (a route names its own; anything else there is refused), and points
each route's http.token_file and source.schema_registry.*_file at its routeSecrets mounts.
Mutates .config (a deep copy of .Values.config).
*/}}
{{- define "event-sink.routes" -}}
{{- $config := .config }}
{{- $values := .Values }}
{{- if $values.registry.url }}
{{- fail "registry.url is for a config without routes: give each route its source.schema_registry.url, and its credentials in routeSecrets.<route>.registry" }}
{{- end }}
{{- $kafka := $config.kafka }}
{{- if hasKey $kafka "topics" }}
{{- if eq (toJson $kafka.topics) (toJson (list "user-behavior-events")) }}
{{- $_ := unset $kafka "topics" }}
{{- else }}
{{- fail "config.kafka.topics is set next to config.routes: each route names its own (routes[].topics or routes[].topic_pattern)" }}
{{- end }}
{{- end }}
{{- if hasKey $config "source" }}
{{- if eq (toJson $config.source) (toJson (dict "schema_file" "/app/schemas/user_behavior_event.avsc")) }}
{{- $_ := unset $config "source" }}
{{- else }}
{{- fail "config.source is set next to config.routes: each route has its own (routes[].source)" }}
{{- end }}
{{- end }}
{{- $dir := include "event-sink.routeSecretsDir" . }}
{{- $names := list }}
{{- range $i, $route := $config.routes }}
{{- $name := required (printf "config.routes[%d].name is required" $i) $route.name }}
{{- $names = append $names $name }}
{{- $http := dig "http" dict $route }}
{{- if hasKey $http "token_file" }}
{{- fail (printf "config.routes[%d].http.token_file is set by the chart: put the route's token in routeSecrets.%s.token" $i $name) }}
{{- end }}
{{- $secrets := get ($values.routeSecrets | default dict) $name | default dict }}
{{- with $secrets.token }}
{{- $_ := required (printf "routeSecrets.%s.token.existingSecret is required" $name) .existingSecret }}
{{- $_ := set $http "token_file" (printf "%s/%s/token/token" $dir $name) }}
{{- $_ := set $route "http" $http }}
{{- end }}
{{- with $secrets.registry }}
{{- $source := dig "source" dict $route }}
{{- $registry := dig "schema_registry" dict $source }}
{{- if ne (dig "format" "avro" $source) "confluent" }}
{{- fail (printf "routeSecrets.%s.registry is set but config.routes[%d].source.format is not confluent" $name $i) }}
{{- end }}
{{- $_ := required (printf "routeSecrets.%s.registry is set but config.routes[%d].source.schema_registry.url is not" $name $i) $registry.url }}
{{- $_ := required (printf "routeSecrets.%s.registry.existingSecret is required" $name) .existingSecret }}
{{- range $key := list "username" "username_file" "password_file" "token_file" }}
{{- if hasKey $registry $key }}
{{- fail (printf "config.routes[%d].source.schema_registry.%s is set by the chart: use routeSecrets.%s.registry" $i $key $name) }}
{{- end }}
{{- end }}
{{- if .tokenKey }}
{{- $_ := set $registry "token_file" (printf "%s/%s/registry/token" $dir $name) }}
{{- else if and .usernameKey .passwordKey }}
{{- $_ := set $registry "username_file" (printf "%s/%s/registry/username" $dir $name) }}
{{- $_ := set $registry "password_file" (printf "%s/%s/registry/password" $dir $name) }}
{{- else }}
{{- fail (printf "routeSecrets.%s.registry needs usernameKey and passwordKey (basic auth) or tokenKey (bearer)" $name) }}
{{- end }}
{{- $_ := set $source "schema_registry" $registry }}
{{- $_ := set $route "source" $source }}
{{- end }}
{{- end }}
{{- range $name, $_ := ($values.routeSecrets | default dict) }}
{{- if not (has $name $names) }}
{{- fail (printf "routeSecrets.%s names no route of config.routes" $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The Schema Registry: registry.url goes with config.source.format confluent, and the chart owns
source.schema_registry.url and .username (the username comes from registry.existingSecret).
*/}}
{{- define "event-sink.checkRegistry" -}}
{{- $registry := .Values.registry }}
{{- $format := dig "source" "format" "avro" .Values.config }}
{{- range $key := list "url" "username" }}
{{- if hasKey (dig "source" "schema_registry" dict $.Values.config) $key }}
{{- fail (printf "config.source.schema_registry.%s is set by the chart: use registry.url and registry.existingSecret (usernameKey, passwordKey or tokenKey)" $key) }}
{{- end }}
{{- end }}
{{- if eq $format "confluent" }}
{{- $_ := required "config.source.format is confluent: set registry.url (the Schema Registry's URL)" $registry.url }}
{{- else if $registry.url }}
{{- fail (printf "registry.url is set but config.source.format is %q: the registry is read only with format confluent" $format) }}
{{- end }}
{{- if and $registry.existingSecret (not $registry.url) }}
{{- fail "registry.existingSecret is set but registry.url is not" }}
{{- end }}
{{- if and $registry.existingSecret (not $registry.tokenKey) (not (and $registry.usernameKey $registry.passwordKey)) }}
{{- fail "registry.existingSecret needs usernameKey and passwordKey (basic auth) or tokenKey (bearer)" }}
{{- end }}
{{- end }}

{{/* config.workers: the connector processes in each pod (default 1). */}}
{{- define "event-sink.workers" -}}
{{- dig "workers" 1 .Values.config | int }}
{{- end }}

{{/* Container resources: .Values.resources, with a CPU request of one core per worker unless requests.cpu is set. */}}
{{- define "event-sink.resources" -}}
{{- $resources := deepCopy .Values.resources }}
{{- $requests := $resources.requests | default dict }}
{{- if not (hasKey $requests "cpu") }}
{{- $_ := set $requests "cpu" (printf "%dm" (mul (include "event-sink.workers" . | int) 1000)) }}
{{- end }}
{{- $_ := set $resources "requests" $requests }}
{{- toYaml $resources }}
{{- end }}

{{/*
A value rendered through `tpl`, the Bitnami way (common.tplvalues.render): a string as it is,
anything else as YAML first. Usage: include "event-sink.render" (dict "value" .Values.x "context" $)
*/}}
{{- define "event-sink.render" -}}
{{- if typeIs "string" .value }}
{{- tpl .value .context }}
{{- else }}
{{- tpl (.value | toYaml) .context }}
{{- end }}
{{- end }}

{{/*
The Grafana dashboard's uid, unique per release and namespace: the full name (cut to 27) and
12 hex digits of a hash of namespace/full name, 40 characters at most (Grafana's limit).
*/}}
{{- define "event-sink.dashboardUid" -}}
{{- $fullname := include "event-sink.fullname" . }}
{{- $hash := printf "%s/%s" .Release.Namespace $fullname | sha256sum | trunc 12 }}
{{- printf "%s-%s" ($fullname | replace "." "-" | trunc 27 | trimSuffix "-") $hash }}
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
