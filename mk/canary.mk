# Canary release of business-logic: v2 (the same image with the regression settings of
# business-logic/src/canary.rs) next to v1, front-end's calls split by weight in the mesh: the
# weights of the HTTPRoute on the business-logic Service (helm/app), applied by front-end's sidecar
# or, with MESH_MODE=ambient, by the waypoint. The same targets serve both modes.
# Included by the top-level Makefile. Each target is `make helm-app` (mk/charts.mk: same images,
# namespace and HELM_VALUES files) with all three canary values given explicitly, never
# --reuse-values: the release then depends only on the command, so running it again changes
# nothing. A target that would move calls onto pods that are not there yet, or off pods it is
# about to remove, first runs a step that puts v2 in place with no calls.

# Percent of the calls `make canary` sends to v2 (0 to 100).
WEIGHT ?= 20
HELP_VARIABLES += WEIGHT
# The app's mesh mode (MESH_MODE, mk/charts.mk) goes to the chart through helm-app, which refuses a
# mode other than the one the namespace runs in: `make canary MESH_MODE=ambient` on an ambient cluster.

CANARY_DEPLOYMENT := deployment/business-logic-v2
# helm-app's extra arguments: v2 on or off, then the v1 and v2 weights.
canary_set = --set business-logic.canary.enabled=$(1) --set canary.weights.v1=$(2) --set canary.weights.v2=$(3)
# True when v2 runs already (a first `make canary` or `make promote` deploys it with no calls first).
canary_running = $(KUBECTL_CTX) -n $(NAMESPACE) get $(CANARY_DEPLOYMENT) >/dev/null 2>&1

##@ Canary (business-logic v2)

.PHONY: canary
canary: ## Deploy business-logic v2 next to v1 and send it WEIGHT percent of the calls (default 20)
	@case "$(WEIGHT)" in ''|*[!0-9]*) echo "WEIGHT=$(WEIGHT) is not valid; allowed: a whole number from 0 to 100" >&2; exit 2;; esac
	@[ "$(WEIGHT)" -le 100 ] || { echo "WEIGHT=$(WEIGHT) is out of range; allowed: 0 to 100" >&2; exit 2; }
	if ! $(canary_running); then \
	  echo "==> business-logic v2 is not running: deploying it with no calls first"; \
	  $(MAKE) helm-app HELM_SET_ARGS="$(call canary_set,true,100,0)"; \
	fi
	$(MAKE) helm-app HELM_SET_ARGS="$(call canary_set,true,$$((100 - $(WEIGHT))),$(WEIGHT))"
	@echo "business-logic v2 gets $(WEIGHT) % of the calls: compare v1 and v2 in Grafana (Demo app, Canary) and Kiali (versioned app graph)"

.PHONY: promote
promote: ## Send every call to business-logic v2 (v1 keeps running, idle, for a quick rollback)
	if ! $(canary_running); then \
	  echo "==> business-logic v2 is not running: deploying it with no calls first"; \
	  $(MAKE) helm-app HELM_SET_ARGS="$(call canary_set,true,100,0)"; \
	fi
	$(MAKE) helm-app HELM_SET_ARGS="$(call canary_set,true,0,100)"

.PHONY: rollback
rollback: ## Send every call back to business-logic v1, then remove v2
	if $(canary_running); then \
	  echo "==> moving every call off business-logic v2 before removing it"; \
	  $(MAKE) helm-app HELM_SET_ARGS="$(call canary_set,true,100,0)"; \
	fi
	$(MAKE) helm-app HELM_SET_ARGS="$(call canary_set,false,100,0)"
