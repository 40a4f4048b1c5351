{{/*
The canary's mesh routing for business-logic: the DestinationRule subsets (by the
pods' `version` label, which the business-logic chart sets to v1, and v2 on the
canary) and the weighted route of its VirtualService. v2 appears only while
business-logic.canary.enabled; without it every call goes to subset v1.
*/}}
{{- define "app.canaryEnabled" -}}
{{- if (index .Values "business-logic" "canary" "enabled") }}true{{ end }}
{{- end }}

{{- define "app.businessLogicSubsets" -}}
subsets:
  - name: v1
    labels:
      version: v1
{{- if include "app.canaryEnabled" . }}
  - name: v2
    labels:
      version: v2
{{- end }}
{{- end }}

{{- define "app.businessLogicRoute" -}}
{{- $host := include "app.host" (dict "ctx" . "name" "business-logic") }}
route:
  - destination:
      host: {{ $host }}
      subset: v1
      port:
        number: 8080
    weight: {{ .Values.canary.weights.v1 }}
{{- if include "app.canaryEnabled" . }}
  - destination:
      host: {{ $host }}
      subset: v2
      port:
        number: 8080
    weight: {{ .Values.canary.weights.v2 }}
{{- end }}
{{- end }}
