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
{{- if gt $sources 1 }}
{{- fail "redis: set only one of redis.existingSecret.name, redis.url and redis.inCluster.enabled" }}
{{- end }}
{{- if and $r.tls.enabled $r.inCluster.enabled }}
{{- fail "redis.tls.enabled: the in-cluster Redis (redis.inCluster) does not serve TLS" }}
{{- end }}
{{- if $r.url }}
{{- if not (regexMatch "^rediss?://[^/]+" $r.url) }}
{{- fail "redis.url must look like redis://host:port[/db] or rediss://host:port[/db]" }}
{{- end }}
{{- if and $r.tls.enabled (not (hasPrefix "rediss://" $r.url)) }}
{{- fail "redis.tls.enabled requires a rediss:// URL in redis.url" }}
{{- end }}
{{- if and $r.password (not (regexMatch "^rediss?://[^/@]*@" $r.url)) }}
{{- regexReplaceAll "^(rediss?://)" $r.url (printf "${1}:%s@" (urlquery $r.password | replace "+" "%20")) }}
{{- else }}
{{- $r.url }}
{{- end }}
{{- else if $r.inCluster.enabled }}
{{- if $r.password }}
{{- printf "redis://:%s@%s:6379/0" (urlquery $r.password | replace "+" "%20") (include "bullflow.redisName" .) }}
{{- else }}
{{- printf "redis://%s:6379/0" (include "bullflow.redisName" .) }}
{{- end }}
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
