##@ Verify the cluster

# `make verify`: after `make up`, checks every link of the chain through the
# gateway URL (the app, its trace in Jaeger, its logs in Loki, the metrics in
# Prometheus, Kiali's graph with mTLS, span metrics in Jaeger's Monitor tab,
# the gateway's access log line in Loki) and says for each broken link what to
# look at. If nothing answers at VERIFY_URL it port-forwards to the gateway
# itself (KUBECTL, KUBE_CONTEXT) and stops the forward when done.
VERIFY_URL ?= http://localhost:$(or $(GATEWAY_PORT),8080)
NAMESPACE ?= demo-app
KUBECTL ?= kubectl
# Extra flags, e.g. --postgres off --poll-limit 60s (see `cargo run -p verify -- --help`).
VERIFY_ARGS ?=
# The mesh mode verify expects: MESH_MODE when given (make verify MESH_MODE=ambient, or from the
# environment), else auto: verify reads the namespace's istio.io/dataplane-mode label. Not the
# default of MESH_MODE (sidecar, mk/charts.mk), which would fail every check of an ambient cluster.
VERIFY_MESH_MODE = $(if $(filter command line environment,$(origin MESH_MODE)),$(MESH_MODE),auto)

.PHONY: verify
verify: ## After make up: check app, trace, logs, metrics, Kiali graph, span metrics, access log on the cluster; say what is broken (VERIFY_URL, MESH_MODE)
	$(CARGO) run --release -p verify -- --url "$(VERIFY_URL)" --namespace "$(NAMESPACE)" \
	  --kubectl "$(KUBECTL)" $(if $(KUBE_CONTEXT),--context "$(KUBE_CONTEXT)") \
	  --mesh-mode "$(VERIFY_MESH_MODE)" $(VERIFY_ARGS)
