{{- define "app.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name for the umbrella's own objects (Gateway, VirtualServices). */}}
{{- define "app.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "app.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "app.labels" -}}
helm.sh/chart: {{ include "app.chart" . }}
app.kubernetes.io/name: {{ include "app.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: service-mesh-demo
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Fully qualified name of a Service in the release's namespace. */}}
{{- define "app.host" -}}
{{- printf "%s.%s.svc.cluster.local" .name .ctx.Release.Namespace }}
{{- end }}

{{/* Fully qualified name of an add-on Service. */}}
{{- define "app.addonHost" -}}
{{- printf "%s.%s.svc.cluster.local" .name .ctx.Values.gateway.addonsNamespace }}
{{- end }}

{{/* SPIFFE principal of a ServiceAccount in the release's namespace. */}}
{{- define "app.principal" -}}
{{- printf "cluster.local/ns/%s/sa/%s" .ctx.Release.Namespace .sa }}
{{- end }}

{{/* The workloads of this release, by the Service/ServiceAccount name they all share. */}}
{{- define "app.workloads" -}}
{{- $names := list "front-end" "business-logic" }}
{{- if .Values.global.postgres.enabled }}
{{- $names = append $names "postgres" }}
{{- end }}
{{- join "," $names }}
{{- end }}
