{{/*
Names. The Service, StatefulSet, Secret and ServiceAccount are all named `postgres`,
without the release name: business-logic's DATABASE_URL and the AuthorizationPolicies
refer to them by that name (one release per namespace).
*/}}
{{- define "postgres.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "postgres.fullname" -}}
{{- include "postgres.name" . }}
{{- end }}

{{- define "postgres.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The image tag: image.tag, or the chart's appVersion. */}}
{{- define "postgres.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "postgres.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "postgres.tag" .) }}
{{- end }}

{{/* Selector labels: fixed for the life of the StatefulSet. */}}
{{- define "postgres.selectorLabels" -}}
app.kubernetes.io/name: {{ include "postgres.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels, plus `app` and `version`, which Istio and Kiali read. */}}
{{- define "postgres.labels" -}}
helm.sh/chart: {{ include "postgres.chart" . }}
{{ include "postgres.selectorLabels" . }}
app.kubernetes.io/version: {{ include "postgres.tag" . | trunc 63 | quote }}
app.kubernetes.io/component: database
app.kubernetes.io/part-of: service-mesh-demo
app.kubernetes.io/managed-by: {{ .Release.Service }}
app: {{ include "postgres.name" . }}
version: {{ include "postgres.tag" . | trunc 63 | quote }}
{{- end }}

{{- define "postgres.serviceAccountName" -}}
{{- include "postgres.fullname" . }}
{{- end }}

{{/*
The password: auth.password, else the one already in the Secret (so upgrades keep
the password the data directory was initialised with), else a new random one.
`helm template` has no cluster, so it prints a new random one each time.
*/}}
{{- define "postgres.password" -}}
{{- if .Values.auth.password }}
{{- .Values.auth.password }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "postgres.fullname" .) }}
{{- if and $existing $existing.data (hasKey $existing.data "password") }}
{{- index $existing.data "password" | b64dec }}
{{- else }}
{{- randAlphaNum 24 }}
{{- end }}
{{- end }}
{{- end }}
