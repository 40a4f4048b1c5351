{{/*
Names. The Service, Deployment and ServiceAccount are all named `front-end`, without
the release name: the mesh routes, AuthorizationPolicies and dashboards of this demo
refer to them by that name (one release per namespace).
*/}}
{{- define "front-end.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "front-end.fullname" -}}
{{- include "front-end.name" . }}
{{- end }}

{{- define "front-end.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The image tag: image.tag, or the chart's appVersion. */}}
{{- define "front-end.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* repository:tag, plus @digest when image.digest is set (make helm-app sets the pushed one). */}}
{{- define "front-end.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "front-end.tag" .) }}
{{- with .Values.image.digest }}@{{ . }}{{ end }}
{{- end }}

{{/* Selector labels: fixed for the life of the Deployment. */}}
{{- define "front-end.selectorLabels" -}}
app.kubernetes.io/name: {{ include "front-end.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels, plus `app` and `version`, which Istio and Kiali read. */}}
{{- define "front-end.labels" -}}
helm.sh/chart: {{ include "front-end.chart" . }}
{{ include "front-end.selectorLabels" . }}
app.kubernetes.io/version: {{ include "front-end.tag" . | trunc 63 | quote }}
app.kubernetes.io/component: web
app.kubernetes.io/part-of: service-mesh-demo
app.kubernetes.io/managed-by: {{ .Release.Service }}
app: {{ include "front-end.name" . }}
version: {{ include "front-end.tag" . | trunc 63 | quote }}
{{- end }}

{{- define "front-end.serviceAccountName" -}}
{{- include "front-end.fullname" . }}
{{- end }}

{{/* Ports of the span collector endpoints (each URL names its port; the schema insists),
comma-separated for traffic.sidecar.istio.io/excludeOutboundPorts. */}}
{{- define "front-end.collectorPorts" -}}
{{- $ports := list }}
{{- range $url := list .Values.global.tracing.zipkinEndpoint .Values.global.tracing.otlpEndpoint }}
{{- $ports = append $ports (regexFind "[0-9]+$" (urlParse $url).host) }}
{{- end }}
{{- $ports | uniq | join "," }}
{{- end }}
