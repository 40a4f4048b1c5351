{{/*
The business-logic Deployment, rendered once per version: deployment.yaml (v1,
always) and deployment-canary.yaml (v2, when canary.enabled). Arguments (a dict):
  ctx       the chart's root context
  name      the Deployment's name
  version   the pod label `version` (and Istio's canonical revision, and
            SERVICE_VERSION): the umbrella chart's per-version Services
            (business-logic-v1, business-logic-v2) select on it
  replicas  pod count
  env       extra container env (a list of EnvVar), after the common ones
Each Deployment selects its own version only, so the two never claim each
other's pods; the umbrella chart's Service `business-logic` selects both.
*/}}
{{- define "business-logic.deployment" -}}
{{- $ctx := .ctx }}
{{- $pg := $ctx.Values.global.postgres }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "business-logic.workloadLabels" . | nindent 4 }}
spec:
  replicas: {{ .replicas }}
  selector:
    matchLabels:
      {{- include "business-logic.selectorLabels" $ctx | nindent 6 }}
      version: {{ .version }}
  template:
    metadata:
      labels:
        {{- include "business-logic.workloadLabels" . | nindent 8 }}
      annotations:
        {{- /* The span exports bypass the sidecar (excluded collector ports), so they
        become neither traces of their own nor edges in Kiali's graph. Prometheus scrape hints (Istio's metrics merging serves them through the sidecar);
        the app waits for its sidecar (it talks to the database at start-up); `kubectl logs`
        picks the app container. */}}
        {{- $annotations := dict
              "prometheus.io/scrape" "true"
              "prometheus.io/port" "8080"
              "prometheus.io/path" "/metrics"
              "proxy.istio.io/config" "{\"holdApplicationUntilProxyStarts\": true}"
              "kubectl.kubernetes.io/default-container" "business-logic"
              "traffic.sidecar.istio.io/excludeOutboundPorts" (include "business-logic.collectorPorts" $ctx) }}
        {{- toYaml (mergeOverwrite $annotations $ctx.Values.podAnnotations) | nindent 8 }}
    spec:
      serviceAccountName: {{ include "business-logic.serviceAccountName" $ctx }}
      # Above SHUTDOWN_GRACE_PERIOD_SECS, so in-flight requests finish after SIGTERM.
      terminationGracePeriodSeconds: {{ add $ctx.Values.shutdownGracePeriodSecs 10 }}
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile:
          type: RuntimeDefault
      containers:
        - name: business-logic
          image: {{ include "business-logic.image" $ctx | quote }}
          imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
          ports:
            - name: http
              containerPort: 8080
              protocol: TCP
          env:
            - name: PORT
              value: "8080"
            - name: OTEL_SERVICE_NAME
              value: business-logic
            # The pod's identity (downward API), for the span resource below.
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: POD_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
            - name: NODE_NAME
              valueFrom:
                fieldRef:
                  fieldPath: spec.nodeName
            # Added to every span's resource by the OpenTelemetry SDK (service.version comes from
            # SERVICE_VERSION below). Kubernetes expands a $(VAR) only when VAR is declared above
            # this entry in the same container.
            - name: OTEL_RESOURCE_ATTRIBUTES
              value: "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME),k8s.node.name=$(NODE_NAME)"
            - name: OTEL_TRACES_EXPORTER
              value: {{ $ctx.Values.global.tracing.exporter | quote }}
            - name: OTEL_EXPORTER_ZIPKIN_ENDPOINT
              value: {{ $ctx.Values.global.tracing.zipkinEndpoint | quote }}
            - name: OTEL_EXPORTER_OTLP_ENDPOINT
              value: {{ $ctx.Values.global.tracing.otlpEndpoint | quote }}
            - name: RUST_LOG
              value: {{ $ctx.Values.rustLog | quote }}
            - name: LOG_FORMAT
              value: {{ $ctx.Values.logFormat | quote }}
            - name: SHUTDOWN_GRACE_PERIOD_SECS
              value: {{ $ctx.Values.shutdownGracePeriodSecs | quote }}
            - name: SLOW_ENDPOINT_DELAY_MS
              value: {{ $ctx.Values.slowEndpointDelayMs | quote }}
            - name: DATABASE_MAX_CONNECTIONS
              value: {{ $ctx.Values.databaseMaxConnections | quote }}
            - name: SERVICE_VERSION
              value: {{ .version | quote }}
            {{- if $pg.enabled }}
            # The postgres chart's Secret; Kubernetes expands $(POSTGRES_PASSWORD) below,
            # so the password never appears in the manifest.
            - name: POSTGRES_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: postgres
                  key: password
            # Plain TCP to the sidecar; the mesh encrypts the hop with mTLS.
            - name: DATABASE_URL
              value: {{ printf "postgres://%s:$(POSTGRES_PASSWORD)@postgres:5432/%s?sslmode=disable" $pg.username $pg.database | quote }}
            {{- else }}
            - name: DATABASE_URL
              value: sqlite:///data/business-logic.db
            {{- end }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          # 503 until the migrations are applied and the database answers.
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 2
          resources:
            {{- toYaml $ctx.Values.resources | nindent 12 }}
          securityContext:
            runAsNonRoot: true
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities:
              drop: ["ALL"]
            seccompProfile:
              type: RuntimeDefault
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if not $pg.enabled }}
            - name: data
              mountPath: /data
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 16Mi
        {{- if not $pg.enabled }}
        # SQLite database file; lives as long as the pod.
        - name: data
          emptyDir:
            sizeLimit: 256Mi
        {{- end }}
{{- end }}
