# Container images, the Helm chart helm/app, and their linters.
# Included by the top-level Makefile (SHELL, VENV and $(VENV)/.installed come from there).

# Registry the images are pushed to and pulled from (the kind cluster's local registry).
REGISTRY ?= localhost:5001
# Image tag: the chart's appVersion, which is the Cargo workspace version.
VERSION ?= $(shell awk '/^appVersion:/ { gsub(/"/, "", $$2); print $$2 }' helm/app/Chart.yaml)
DOCKER ?= docker
HELM ?= helm
KUBECTL ?= kubectl
NAMESPACE ?= demo-app
RELEASE ?= app
# helm-app targets KUBE_CONTEXT when set (mk/cluster.mk sets it to the kind cluster's), else the current context.
KUBECTL_CTX = $(KUBECTL)$(if $(KUBE_CONTEXT), --context $(KUBE_CONTEXT))
HELM_CTX = $(HELM)$(if $(KUBE_CONTEXT), --kube-context $(KUBE_CONTEXT))
# Extra values files for helm-app, e.g. HELM_VALUES=helm/app/ci/fault-injection-values.yaml
HELM_VALUES ?=
# Extra helm arguments for helm-app, e.g. HELM_SET_ARGS="--set canary.weights.v1=100" (mk/canary.mk uses it).
HELM_SET_ARGS ?=
HELM_TIMEOUT ?= 5m
# Istio's data plane the app runs in: `sidecar` (an Envoy in every app pod) or `ambient` (ztunnel
# on every node, a waypoint for L7). helm-app passes it to the chart (mesh.mode) and labels
# NAMESPACE for it; `make create-cluster` installs Istio for it and converts a cluster in the other mode.
MESH_MODE ?= sidecar
# Kubernetes version the rendered manifests are validated against.
KUBE_VERSION ?= 1.36.0
HELP_VARIABLES += MESH_MODE REGISTRY VERSION NAMESPACE RELEASE HELM HELM_VALUES KUBE_VERSION

# The namespace labels of each mode (create-cluster.sh sets the same): the other mode's label is
# removed (`key-`), so the namespace is in exactly one mode.
mesh_labels_sidecar := istio-injection=enabled istio.io/dataplane-mode-
mesh_labels_ambient := istio.io/dataplane-mode=ambient istio-injection-

# The digest the registry gave REGISTRY/<service>:VERSION when `make push` pushed it from this
# machine, empty otherwise. helm-app pins it, so a rebuild under the same tag still rolls out.
image_digest = $$($(DOCKER) image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' \
  $(REGISTRY)/$(1):$(VERSION) 2>/dev/null | sed -n 's|^$(REGISTRY)/$(1)@||p' | head -n 1)

CHART := helm/app
CHART_CI_VALUES := $(sort $(wildcard $(CHART)/ci/*-values.yaml))
SUBCHARTS := $(sort $(wildcard $(CHART)/charts/*/Chart.yaml))

##@ Images and charts

.PHONY: build-business-logic
build-business-logic: ## Build the business-logic image (this machine's architecture), tagged REGISTRY/business-logic:VERSION
	$(DOCKER) build --build-arg PACKAGE=business-logic -t $(REGISTRY)/business-logic:$(VERSION) .

.PHONY: build-front-end
build-front-end: ## Build the front-end image (this machine's architecture), tagged REGISTRY/front-end:VERSION
	$(DOCKER) build --build-arg PACKAGE=front-end -t $(REGISTRY)/front-end:$(VERSION) .

.PHONY: build
build: build-business-logic build-front-end ## Build both images

.PHONY: push
push: ## Push both images to REGISTRY (localhost:5001; build them first)
	$(DOCKER) push $(REGISTRY)/business-logic:$(VERSION)
	$(DOCKER) push $(REGISTRY)/front-end:$(VERSION)

.PHONY: helm-app
helm-app: ## helm upgrade --install helm/app as RELEASE in NAMESPACE (labelled for MESH_MODE), wait for the rollout
	@command -v $(HELM) >/dev/null || { echo "helm not found: install Helm (https://helm.sh/docs/intro/install/)" >&2; exit 1; }
	@case "$(MESH_MODE)" in sidecar|ambient) ;; *) echo "MESH_MODE=$(MESH_MODE) is not valid; allowed: sidecar (the default) or ambient" >&2; exit 2;; esac
	@# The chart's routes and policies differ by mode: the cluster must be in the same one. create-cluster.sh
	@# records the mode the app's pods run in on the namespace; another mode there means converting first.
	@was="$$($(KUBECTL_CTX) get namespace $(NAMESPACE) -o jsonpath='{.metadata.annotations.demo\.istio-add-ons/mesh-mode}' 2>/dev/null || true)"; \
	if [ -n "$$was" ] && [ "$$was" != "$(MESH_MODE)" ]; then \
	  echo "Namespace $(NAMESPACE) runs in $$was mode, not $(MESH_MODE). Convert the cluster first:" \
	    "make up MESH_MODE=$(MESH_MODE) (or make create-cluster MESH_MODE=$(MESH_MODE), then this again);" \
	    "or keep $$was mode: MESH_MODE=$$was" >&2; exit 2; \
	fi
	@if [ "$(MESH_MODE)" = ambient ] && ! $(KUBECTL_CTX) -n istio-system get daemonset ztunnel >/dev/null 2>&1; then \
	  echo "MESH_MODE=ambient needs Istio's ambient profile (ztunnel in istio-system), not installed on this cluster:" \
	    "make create-cluster MESH_MODE=ambient installs it" >&2; exit 2; \
	fi
	$(KUBECTL_CTX) create namespace $(NAMESPACE) --dry-run=client -o yaml | $(KUBECTL_CTX) apply -f -
	$(KUBECTL_CTX) label namespace $(NAMESPACE) $(mesh_labels_$(MESH_MODE)) --overwrite
	$(HELM_CTX) upgrade --install $(RELEASE) $(CHART) -n $(NAMESPACE) --create-namespace \
	  --wait --timeout $(HELM_TIMEOUT) \
	  --set-string front-end.image.repository=$(REGISTRY)/front-end \
	  --set-string front-end.image.tag=$(VERSION) \
	  --set-string front-end.image.digest="$(call image_digest,front-end)" \
	  --set-string business-logic.image.repository=$(REGISTRY)/business-logic \
	  --set-string business-logic.image.tag=$(VERSION) \
	  --set-string business-logic.image.digest="$(call image_digest,business-logic)" \
	  --set mesh.mode=$(MESH_MODE) \
	  $(addprefix -f ,$(HELM_VALUES)) $(HELM_SET_ARGS)
	$(KUBECTL_CTX) -n $(NAMESPACE) rollout status deployment/front-end --timeout $(HELM_TIMEOUT)
	$(KUBECTL_CTX) -n $(NAMESPACE) rollout status deployment/business-logic --timeout $(HELM_TIMEOUT)
	if [ "$(GATEWAY_API)" != istio ]; then \
	  $(KUBECTL_CTX) -n $(NAMESPACE) rollout status deployment/$(GATEWAY_NAME)-istio --timeout $(HELM_TIMEOUT); \
	fi
	if $(KUBECTL_CTX) -n $(NAMESPACE) get statefulset/postgres >/dev/null 2>&1; then \
	  $(KUBECTL_CTX) -n $(NAMESPACE) rollout status statefulset/postgres --timeout $(HELM_TIMEOUT); \
	fi

##@ Lint

# helm lint and a render per values scenario, each validated against the
# Kubernetes, Istio and Gateway API schemas. A real helm when one is on PATH,
# else the Helm engine tools/ installs into VENV (HELM_RENDER). Only failures
# and a summary are printed.
.PHONY: lint-charts
lint-charts: $(VENV)/.installed ## helm lint --strict; render and schema-check helm/app (defaults, every ci/*-values.yaml) and each subchart
	@if command -v $(HELM) >/dev/null; then \
	  engine="$$(command -v $(HELM))"; \
	  render() { $(HELM) template $(RELEASE) -n $(NAMESPACE) --kube-version $(KUBE_VERSION) "$$@"; }; \
	  lint() { $(HELM) lint --strict --with-subcharts $(CHART) "$$@"; }; \
	else \
	  engine="$(HELM_RENDER) (Helm's engine; no $(HELM) on PATH)"; \
	  render() { $(HELM_RENDER) --release $(RELEASE) --namespace $(NAMESPACE) --kube-version v$(KUBE_VERSION) "$$@"; }; \
	  lint() { $(HELM_RENDER) --lint $(CHART) --strict "$$@"; }; \
	fi; \
	failed=0; runs=0; \
	check() { \
	  local what="$$1" out; shift; runs=$$((runs + 1)); \
	  if [ "$$1" = lint ]; then out=$$("$$@" 2>&1) || { printf 'FAIL helm lint %s\n%s\n' "$$what" "$$out"; failed=$$((failed + 1)); }; \
	  else out=$$({ render "$$@" | $(VALIDATE_MANIFESTS) -q -k $(KUBE_VERSION) -; } 2>&1) \
	    || { printf 'FAIL render %s\n%s\n' "$$what" "$$out"; failed=$$((failed + 1)); }; fi; \
	}; \
	for values in "" $(CHART_CI_VALUES); do \
	  what="$(CHART) $${values:-(defaults)}"; \
	  check "$$what" lint $${values:+-f "$$values"}; \
	  check "$$what" $(CHART) $${values:+-f "$$values"}; \
	done; \
	for chart in $(dir $(SUBCHARTS)); do check "$$chart (alone, defaults)" "$$chart"; done; \
	echo "lint-charts: $$runs checks (helm lint and schema-checked renders) with $$engine, $$failed failed"; \
	[ "$$failed" -eq 0 ]

.PHONY: lint-docker
lint-docker: $(VENV)/.installed ## hadolint on the Dockerfile (one for both services)
	$(VENV)/bin/hadolint Dockerfile

.PHONY: lint-yaml
lint-yaml: $(VENV)/.installed ## yamllint on the YAML that is not a Helm template (.yamllint.yaml)
	$(VENV)/bin/yamllint .
