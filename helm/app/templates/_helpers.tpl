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

{{/* Labels Istio puts on the pods of a gateway it deploys for a Gateway API Gateway
(spec.infrastructure.labels): the common labels without app.kubernetes.io/name and `app`,
which Istio would read as the proxy's app and name its spans after (`app.<namespace>`);
without them the spans carry the gateway Deployment's name. */}}
{{- define "app.infrastructureLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: service-mesh-demo
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

{{/* Namespaces whose HTTPRoutes the Gateway admits: the release's, plus the add-ons' for the dashboards. */}}
{{- define "app.routeNamespaces" -}}
{{- $namespaces := list .Release.Namespace }}
{{- if .Values.gateway.dashboards }}
{{- $namespaces = append $namespaces .Values.gateway.addonsNamespace }}
{{- end }}
{{- $namespaces | uniq | join "," }}
{{- end }}

{{/* parentRefs entry of every HTTPRoute: the Gateway's `http` listener. */}}
{{- define "app.gatewayParentRef" -}}
- group: gateway.networking.k8s.io
  kind: Gateway
  name: {{ .Values.gateway.name }}
  namespace: {{ .Release.Namespace }}
  sectionName: http
{{- end }}

{{/* HTTPRoute hostnames: gateway.hosts, left out when "*" (any host) is among them. */}}
{{- define "app.routeHostnames" -}}
{{- if not (has "*" .Values.gateway.hosts) }}
hostnames:
  {{- range .Values.gateway.hosts }}
  - {{ . | quote }}
  {{- end }}
{{- end }}
{{- end }}

{{/* SPIFFE principal of the ingress gateway: the one identity front-end accepts. With the
Gateway API, Istio runs the gateway as ServiceAccount <gateway name>-istio in the Gateway's namespace. */}}
{{- define "app.ingressPrincipal" -}}
{{- if eq .Values.gateway.api "gateway" }}
{{- include "app.principal" (dict "ctx" . "sa" (printf "%s-istio" .Values.gateway.name)) }}
{{- else }}
{{- .Values.gateway.istioIngress.principal }}
{{- end }}
{{- end }}

{{/* What front-end asks of business-logic: GET on its two endpoints (contract/src/routes.rs,
business_logic::FAST_ENDPOINT and SLOW_ENDPOINT; Istio matches the path without the query).
An AuthorizationPolicy `operation`; the probes and Prometheus' scrapes do not pass through it. */}}
{{- define "app.businessLogicOperations" -}}
methods: ["GET"]
paths: ["/fast-endpoint", "/slow-endpoint"]
{{- end }}

{{/* The port both services serve /metrics on (their container port `http`, and the pods'
prometheus.io/port annotation). */}}
{{- define "app.metricsPort" -}}
8080
{{- end }}
