{{/*
business-logic's versions and the mesh objects in front of them. The Service
`business-logic` selects every version; one Service per version (`business-logic-v1`,
and `business-logic-v2` while business-logic.canary.enabled) selects the pods by their
`version` label, which the business-logic chart sets. The route attached to
`business-logic` (an HTTPRoute, or with a fault the VirtualService) splits the calls
between the version Services by canary.weights: Gateway API routes pick backends by
Service, not by DestinationRule subset, and a waypoint honours only that form.
*/}}
{{- define "app.canaryEnabled" -}}
{{- if (index .Values "business-logic" "canary" "enabled") }}true{{ end }}
{{- end }}

{{/* The versions running, comma-separated: v1, and v2 with the canary. */}}
{{- define "app.businessLogicVersions" -}}
{{- if include "app.canaryEnabled" . }}v1,v2{{ else }}v1{{ end }}
{{- end }}

{{/* Port of the business-logic Services (the container's `http` port; front-end's businessLogicUrl names it). */}}
{{- define "app.businessLogicPort" -}}
8080
{{- end }}

{{/* The Services in front of business-logic, comma-separated: the shared one, then one per version. */}}
{{- define "app.businessLogicServices" -}}
{{- $names := list "business-logic" }}
{{- range splitList "," (include "app.businessLogicVersions" .) }}
{{- $names = append $names (printf "business-logic-%s" .) }}
{{- end }}
{{- join "," $names }}
{{- end }}

{{/* Whether the namespace runs in ambient mode (the waypoint, its bindings and the L7 policies on it). */}}
{{- define "app.ambient" -}}
{{- if eq .Values.mesh.mode "ambient" }}true{{ end }}
{{- end }}

{{/* Whether a fault is injected on calls to business-logic (then a VirtualService routes them). */}}
{{- define "app.faultsOn" -}}
{{- if or .Values.faultInjection.delay.enabled .Values.faultInjection.abort.enabled }}true{{ end }}
{{- end }}

{{/* A Gateway API duration (checked by values.schema.json: digits then ms or s) in milliseconds. */}}
{{- define "app.durationMs" -}}
{{- if hasSuffix "ms" . }}{{ trimSuffix "ms" . }}{{ else }}{{ mul (trimSuffix "s" . | int) 1000 }}{{ end }}
{{- end }}
