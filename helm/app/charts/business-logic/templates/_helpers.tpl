{{/*
Names. The Deployment and ServiceAccount are named `business-logic`, without the
release name, as is the Service in front of them (the umbrella chart's, next to its
per-version Services and the route between them): the mesh routes,
AuthorizationPolicies and dashboards of this demo refer to them by that name (one
release per namespace).
*/}}
{{- define "business-logic.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "business-logic.fullname" -}}
{{- include "business-logic.name" . }}
{{- end }}

{{- define "business-logic.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The image tag: image.tag, or the chart's appVersion. */}}
{{- define "business-logic.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* repository:tag, plus @digest when image.digest is set (make helm-app sets the pushed one). */}}
{{- define "business-logic.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "business-logic.tag" .) }}
{{- with .Values.image.digest }}@{{ . }}{{ end }}
{{- end }}

{{/* Selector labels: fixed for the life of the Deployment. */}}
{{- define "business-logic.selectorLabels" -}}
app.kubernetes.io/name: {{ include "business-logic.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Common labels, plus `app` and `version`, which Istio and Kiali read. */}}
{{- define "business-logic.labels" -}}
{{ include "business-logic.baseLabels" . }}
version: {{ include "business-logic.tag" . | trunc 63 | quote }}
{{- end }}

{{/* The common labels without `version`. */}}
{{- define "business-logic.baseLabels" -}}
helm.sh/chart: {{ include "business-logic.chart" . }}
{{ include "business-logic.selectorLabels" . }}
app.kubernetes.io/version: {{ include "business-logic.tag" . | trunc 63 | quote }}
app.kubernetes.io/component: api
app.kubernetes.io/part-of: service-mesh-demo
app.kubernetes.io/managed-by: {{ .Release.Service }}
app: {{ include "business-logic.name" . }}
{{- end }}

{{/*
Labels of a Deployment and its pods (argument: the dict of business-logic.deployment):
the common labels with `version` set to v1 or v2, and Istio's canonical revision
to match, since Istio and Kiali would otherwise take app.kubernetes.io/version
(the image tag, the same for both).
*/}}
{{- define "business-logic.workloadLabels" -}}
{{ include "business-logic.baseLabels" .ctx }}
version: {{ .version }}
service.istio.io/canonical-revision: {{ .version }}
{{- end }}

{{- define "business-logic.serviceAccountName" -}}
{{- include "business-logic.fullname" . }}
{{- end }}

{{/* Ports of the span collector endpoints (each URL names its port; the schema insists),
comma-separated for traffic.sidecar.istio.io/excludeOutboundPorts. */}}
{{- define "business-logic.collectorPorts" -}}
{{- $ports := list }}
{{- range $url := list .Values.global.tracing.zipkinEndpoint .Values.global.tracing.otlpEndpoint }}
{{- $ports = append $ports (regexFind "[0-9]+$" (urlParse $url).host) }}
{{- end }}
{{- $ports | uniq | join "," }}
{{- end }}
