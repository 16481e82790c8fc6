{{/* Chart name. */}}
{{- define "bullflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release + chart name, unless the release name already contains it. */}}
{{- define "bullflow.fullname" -}}
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

{{- define "bullflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. */}}
{{- define "bullflow.labels" -}}
helm.sh/chart: {{ include "bullflow.chart" . }}
{{ include "bullflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bullflow
{{- end }}

{{/* Labels of the `helm test` pods (not the operator's selector labels: the Service would pick
them). */}}
{{- define "bullflow.testLabels" -}}
helm.sh/chart: {{ include "bullflow.chart" . }}
app.kubernetes.io/name: {{ include "bullflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of the operator pods. */}}
{{- define "bullflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bullflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "bullflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bullflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "bullflow.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* True ("true") when kopf peering is used: more than one replica. */}}
{{- define "bullflow.peering" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{/* The in-cluster Redis' name. */}}
{{- define "bullflow.redisName" -}}
{{- printf "%s-redis" (include "bullflow.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The Redis URL the chart puts in its own Secret ("" when an existing Secret or no default Redis is
used). Validates the Redis settings.
*/}}
{{- define "bullflow.redisURL" -}}
{{- $r := .Values.redis }}
{{- $sources := 0 }}
{{- if $r.existingSecret.name }}{{ $sources = add1 $sources }}{{ end }}
{{- if $r.url }}{{ $sources = add1 $sources }}{{ end }}
{{- if $r.inCluster.enabled }}{{ $sources = add1 $sources }}{{ end }}
{{- if $r.sentinel.enabled }}{{ $sources = add1 $sources }}{{ end }}
{{- if $r.cluster.enabled }}{{ $sources = add1 $sources }}{{ end }}
{{- if gt $sources 1 }}
{{- fail "redis: set only one of redis.existingSecret.name, redis.url, redis.sentinel.enabled, redis.cluster.enabled and redis.inCluster.enabled" }}
{{- end }}
{{- if and $r.tls.enabled $r.inCluster.enabled }}
{{- fail "redis.tls.enabled: the in-cluster Redis (redis.inCluster) does not serve TLS" }}
{{- end }}
{{- if and $r.passwordSecret.name (not (or $r.sentinel.enabled $r.cluster.enabled)) }}
{{- fail "redis.passwordSecret is for redis.sentinel.enabled or redis.cluster.enabled; with redis.url put the whole URL in redis.existingSecret" }}
{{- end }}
{{- if and $r.passwordSecret.name $r.password }}
{{- fail "redis: set only one of redis.password and redis.passwordSecret.name" }}
{{- end }}
{{- if $r.url }}
{{- if not (regexMatch "^rediss?(\\+sentinel|\\+cluster)?://[^/]+" $r.url) }}
{{- fail "redis.url must look like redis://host:port[/db], rediss://host:port[/db], redis+sentinel://host:26379/mymaster or redis+cluster://host:6379" }}
{{- end }}
{{- if and $r.tls.enabled (not (hasPrefix "rediss" $r.url)) }}
{{- fail "redis.tls.enabled requires a rediss:// (or rediss+sentinel://, rediss+cluster://) URL in redis.url" }}
{{- end }}
{{- if and $r.password (not (regexMatch "^rediss?(\\+sentinel|\\+cluster)?://[^/@]*@" $r.url)) }}
{{- regexReplaceAll "^(rediss?(\\+sentinel|\\+cluster)?://)" $r.url (printf "${1}:%s@" (urlquery $r.password | replace "+" "%20")) }}
{{- else }}
{{- $r.url }}
{{- end }}
{{- else if and (or $r.sentinel.enabled $r.cluster.enabled) (not $r.passwordSecret.name) }}
{{- include "bullflow.redisTopologyURL" (dict "redis" $r "password" (urlquery $r.password | replace "+" "%20")) }}
{{- else if $r.inCluster.enabled }}
{{- if $r.password }}
{{- printf "redis://:%s@%s:6379/0" (urlquery $r.password | replace "+" "%20") (include "bullflow.redisName" .) }}
{{- else }}
{{- printf "redis://%s:6379/0" (include "bullflow.redisName" .) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The redis+sentinel:// or redis+cluster:// URL of redis.sentinel / redis.cluster, with `password`
(already percent-encoded, or a `$(VAR)` reference; "" for none) as the data nodes' password and,
with sentinel.authSentinels, the sentinels' too. Called with (dict "redis" .Values.redis
"password" ...).
*/}}
{{- define "bullflow.redisTopologyURL" -}}
{{- $r := .redis }}
{{- $scheme := ternary "rediss" "redis" (eq (toString $r.tls.enabled) "true") }}
{{- $auth := ternary (printf ":%s@" .password) "" (ne .password "") }}
{{- if $r.sentinel.enabled }}
{{- if not $r.sentinel.hosts }}
{{- fail "redis.sentinel.hosts: list the sentinels, e.g. [redis.redis.svc:26379]" }}
{{- end }}
{{- $path := printf "/%s" $r.sentinel.masterName }}
{{- if ne (int $r.sentinel.db) 0 }}{{ $path = printf "%s/%d" $path (int $r.sentinel.db) }}{{ end }}
{{- $query := "" }}
{{- if and $r.sentinel.authSentinels .password }}{{ $query = printf "?sentinelPassword=%s" .password }}{{ end }}
{{- printf "%s+sentinel://%s%s%s%s" $scheme $auth (join "," $r.sentinel.hosts) $path $query }}
{{- else }}
{{- if not $r.cluster.nodes }}
{{- fail "redis.cluster.nodes: list one or more seed nodes, e.g. [redis-cluster.redis.svc:6379]" }}
{{- end }}
{{- printf "%s+cluster://%s%s" $scheme $auth (join "," $r.cluster.nodes) }}
{{- end }}
{{- end }}

{{/*
BULLFLOW_REDIS_URL as a plain env value when redis.passwordSecret is set: the URL refers to the
password as $(BULLFLOW_REDIS_PASSWORD), which Kubernetes expands from the env var defined just
before it (an env var may use those defined earlier in the list). So the password stays in the
user's Secret: not in values, a chart-made Secret, a ConfigMap or the pod's args. "" otherwise.
*/}}
{{- define "bullflow.redisURLFromPasswordSecret" -}}
{{- $r := .Values.redis }}
{{- if and $r.passwordSecret.name (or $r.sentinel.enabled $r.cluster.enabled) }}
{{- include "bullflow.redisTopologyURL" (dict "redis" $r "password" "$(BULLFLOW_REDIS_PASSWORD)") }}
{{- end }}
{{- end }}

{{/* Name and key of the Secret holding BULLFLOW_REDIS_URL, as "name/key"; "" for none. */}}
{{- define "bullflow.redisSecretRef" -}}
{{- if .Values.redis.existingSecret.name }}
{{- printf "%s/%s" .Values.redis.existingSecret.name .Values.redis.existingSecret.key }}
{{- else if include "bullflow.redisURL" . }}
{{- printf "%s-redis-url/url" (include "bullflow.fullname" .) }}
{{- end }}
{{- end }}
