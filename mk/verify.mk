##@ Verify the cluster

# `make verify`: after `make up`, checks every link of the chain through the
# gateway URL (the app, its trace in Jaeger, its logs in Loki, the metrics in
# Prometheus, Kiali's graph with mTLS) and says for each broken link what to
# look at. If nothing answers at VERIFY_URL it port-forwards to the gateway
# itself (KUBECTL, KUBE_CONTEXT) and stops the forward when done.
VERIFY_URL ?= http://localhost:$(or $(GATEWAY_PORT),8080)
NAMESPACE ?= demo-app
KUBECTL ?= kubectl
# Extra flags, e.g. --postgres off --poll-limit 60s (see `cargo run -p verify -- --help`).
VERIFY_ARGS ?=

.PHONY: verify
verify: ## After make up: check app, trace, logs, metrics and Kiali graph on the cluster; say what is broken (VERIFY_URL)
	$(CARGO) run --release -p verify -- --url "$(VERIFY_URL)" --namespace "$(NAMESPACE)" \
	  --kubectl "$(KUBECTL)" $(if $(KUBE_CONTEXT),--context "$(KUBE_CONTEXT)") $(VERIFY_ARGS)
