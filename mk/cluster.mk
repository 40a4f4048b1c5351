# Local kind cluster with Istio and the observability add-ons (included by the
# top-level Makefile). The images and the app chart come from mk/charts.mk
# (build-business-logic, build-front-end, push, helm-app).

CLUSTER_NAME ?= demo
KIND ?= kind
KUBECTL ?= kubectl
DOCKER ?= docker
HELM ?= helm
ISTIOCTL ?= istioctl
# Local registry container (create-cluster.sh starts it on 127.0.0.1:5001).
REG_NAME ?= kind-registry
# Local port of `make port-forward` (the URLs below assume 8080).
GATEWAY_PORT ?= 8080
# Which ingress helm/app was installed with (its value gateway.api): `gateway` (Gateway API:
# Istio deploys the Gateway GATEWAY_NAME as Service GATEWAY_NAME-istio in NAMESPACE) or
# `istio` (istio-system/istio-ingressgateway, which create-cluster installs only then).
GATEWAY_API ?= gateway
GATEWAY_NAME ?= demo-gateway
NAMESPACE ?= demo-app
KUBE_CONTEXT ?= kind-$(CLUSTER_NAME)
KUBE_VERSION ?= 1.36.0
# Non-empty: `make preflight` leaves out resolving the pinned images and charts
# (the network part; each Docker Hub image counts against its pull limit).
SKIP_PINS ?=
HELP_VARIABLES += CLUSTER_NAME KUBE_CONTEXT GATEWAY_PORT GATEWAY_API SKIP_PINS

# Chart versions pinned in create-cluster.sh (one place to change them).
LOKI_CHART_VERSION ?= $(shell sed -n 's/^LOKI_CHART_VERSION="$${LOKI_CHART_VERSION:-\(.*\)}"$$/\1/p' create-cluster.sh)
ALLOY_CHART_VERSION ?= $(shell sed -n 's/^ALLOY_CHART_VERSION="$${ALLOY_CHART_VERSION:-\(.*\)}"$$/\1/p' create-cluster.sh)

# Plain Kubernetes manifests among the add-ons (the rest are Helm values and
# the IstioOperator files, which are istioctl's input, not cluster objects).
CLUSTER_MANIFESTS := $(filter-out istio-add-ons/istio-operator.yaml istio-add-ons/istio-ambient.yaml istio-add-ons/%-values.yaml,$(wildcard istio-add-ons/*.yaml))

##@ Cluster (kind + Istio + add-ons)
.PHONY: preflight
preflight: ## Before make up: Docker running with enough memory and CPUs, tool versions, free ports, every pinned image and chart resolves for MESH_MODE (SKIP_PINS=1: offline)
	@CLUSTER_NAME=$(CLUSTER_NAME) REG_NAME=$(REG_NAME) GATEWAY_PORT=$(GATEWAY_PORT) MESH_MODE=$(MESH_MODE) DOCKER=$(DOCKER) KIND=$(KIND) \
	  KUBECTL=$(KUBECTL) HELM=$(HELM) ISTIOCTL=$(ISTIOCTL) scripts/preflight.sh $(if $(SKIP_PINS),--skip-pins)

.PHONY: up
up: ## The whole walkthrough (after make preflight): cluster, images, app in MESH_MODE; waits, then prints the URLs
	$(MAKE) create-cluster
	$(MAKE) build-business-logic build-front-end push helm-app
	$(MAKE) urls

.PHONY: create-cluster
create-cluster: ## Registry, kind cluster, Istio for MESH_MODE and add-ons (idempotent; converts a cluster in the other mode)
	CLUSTER_NAME=$(CLUSTER_NAME) REG_NAME=$(REG_NAME) APP_NAMESPACE=$(NAMESPACE) GATEWAY_API=$(GATEWAY_API) MESH_MODE=$(MESH_MODE) \
	  DOCKER=$(DOCKER) KIND=$(KIND) \
	  KUBECTL=$(KUBECTL) HELM=$(HELM) ISTIOCTL=$(ISTIOCTL) ./create-cluster.sh

.PHONY: port-forward
port-forward: ## Forward localhost:8080 to the app's ingress gateway (GATEWAY_API=istio: istio-ingressgateway; Ctrl-C stops)
	@echo "App: http://localhost:$(GATEWAY_PORT)/demo-app/  Jaeger: /jaeger  Grafana: /grafana  Kiali: /kiali  Prometheus: /prometheus"
ifeq ($(GATEWAY_API),istio)
	$(KUBECTL) --context $(KUBE_CONTEXT) -n istio-system port-forward svc/istio-ingressgateway $(GATEWAY_PORT):80
else
	$(KUBECTL) --context $(KUBE_CONTEXT) -n $(NAMESPACE) port-forward svc/$(GATEWAY_NAME)-istio $(GATEWAY_PORT):80
endif

.PHONY: urls
urls: ## Print the URLs of the app and the dashboards
	@echo ""
	@echo "Everything is behind the app's ingress gateway ($(GATEWAY_NAME)-istio in $(NAMESPACE)). In another terminal run"
	@echo "    make port-forward"
	@echo "then open:"
	@echo "    App         http://localhost:$(GATEWAY_PORT)/demo-app/"
	@echo "    Jaeger      http://localhost:$(GATEWAY_PORT)/jaeger"
	@echo "    Grafana     http://localhost:$(GATEWAY_PORT)/grafana   (dashboard 'Demo app', uid demo-app)"
	@echo "    Kiali       http://localhost:$(GATEWAY_PORT)/kiali"
	@echo "    Prometheus  http://localhost:$(GATEWAY_PORT)/prometheus"
ifeq ($(MESH_MODE),ambient)
	@echo ""
	@echo "Ambient mode: no sidecars. What ztunnel on each node knows, and the waypoint that serves $(NAMESPACE):"
	@echo "    istioctl ztunnel-config workloads --workload-namespace $(NAMESPACE)"
	@echo "    istioctl waypoint status -n $(NAMESPACE)"
endif
	@echo ""
	@echo "Then check every link of the chain (page, trace, logs, metrics, mesh graph) in one go:"
	@echo "    make verify      (it port-forwards by itself if nothing answers at localhost:$(GATEWAY_PORT))"

.PHONY: clean-up
clean-up: ## Delete the kind cluster and the local registry
	@if $(KIND) get clusters 2>/dev/null | grep -x '$(CLUSTER_NAME)' >/dev/null; then \
	  $(KIND) delete cluster --name $(CLUSTER_NAME); \
	else echo "kind cluster $(CLUSTER_NAME): not found (nothing to delete)"; fi
	@if $(DOCKER) inspect $(REG_NAME) >/dev/null 2>&1; then \
	  $(DOCKER) rm -f $(REG_NAME) >/dev/null && echo "registry $(REG_NAME): removed"; \
	else echo "registry $(REG_NAME): not found (nothing to remove)"; fi

##@ Lint

# No network, no helm: the add-on manifests against the schemas. The Loki and
# Alloy values files are checked by tests/cluster (the settings the demo relies
# on); rendering them with their real charts needs helm and the network, so it
# is the separate lint-addon-charts.
.PHONY: lint-cluster
lint-cluster: $(VENV)/.installed ## yamllint and schema checks of the cluster files (kind config, istio-add-ons/)
	$(VENV)/bin/yamllint kind-cluster-config.yaml istio-add-ons
	@$(VALIDATE_MANIFESTS) -q -k $(KUBE_VERSION) $(CLUSTER_MANIFESTS) | sed 's/^/lint-cluster: /'

.PHONY: lint-addon-charts
lint-addon-charts: $(VENV)/.installed ## Render the Loki and Alloy charts (pinned versions, fetched: needs helm and the network) with istio-add-ons/*-values.yaml, schema-check the output
	@command -v $(HELM) >/dev/null || { echo "lint-addon-charts needs helm (https://helm.sh/docs/intro/install/) and the network" >&2; exit 1; }
	$(HELM) template loki loki --repo https://grafana-community.github.io/helm-charts \
	  --version $(LOKI_CHART_VERSION) -n istio-system -f istio-add-ons/loki-values.yaml \
	  | $(VALIDATE_MANIFESTS) -q -k $(KUBE_VERSION) --ignore-missing-schemas -
	$(HELM) template alloy alloy --repo https://grafana.github.io/helm-charts \
	  --version $(ALLOY_CHART_VERSION) -n istio-system -f istio-add-ons/alloy-values.yaml \
	  | $(VALIDATE_MANIFESTS) -q -k $(KUBE_VERSION) --ignore-missing-schemas -
