#!/usr/bin/env bash
# Creates the walkthrough's local cluster, step by step, and waits for each part:
#   1. a local image registry (container `kind-registry`, 127.0.0.1:5001);
#   2. a kind cluster (`demo`: one control plane, one worker, kind-cluster-config.yaml);
#   3. containerd on every node told to pull localhost:5001/* from the registry
#      (hosts.toml), the registry joined to the `kind` network and published in
#      the `local-registry-hosting` ConfigMap (https://kind.sigs.k8s.io/docs/user/local-registry/);
#   4. the Kubernetes Gateway API CRDs (standard channel), which Istio's
#      Gateway API ingress needs and neither kind nor Istio installs;
#   5. Istio with the mesh configuration in istio-add-ons/istio-operator.yaml,
#      plus the LoadBalancer `istio-ingressgateway` only for GATEWAY_API=istio
#      (the chart's Istio Gateway variant; the default Gateway API ingress is
#      deployed by istiod with the app);
#   6. the app namespace (APP_NAMESPACE, default `demo-app`), labelled for
#      sidecar injection;
#   7. the add-ons in istio-system: Jaeger, Prometheus, Grafana, Kiali (manifests
#      in istio-add-ons/), Loki and Alloy (Helm charts). Grafana's queries select
#      the app's logs by APP_NAMESPACE.
# Every step checks first and skips what is already in place, so running the
# script again finishes without error and changes nothing; a run interrupted
# anywhere is completed by the next one.
#
# Usage: ./create-cluster.sh        (or `make create-cluster`)
# Settings (environment): CLUSTER_NAME, REG_NAME, REG_PORT, APP_NAMESPACE,
# GATEWAY_API (gateway or istio), ISTIO_VERSION, GATEWAY_API_VERSION,
# LOKI_CHART_VERSION, ALLOY_CHART_VERSION, ROLLOUT_TIMEOUT, and the
# commands DOCKER, KIND, KUBECTL, HELM, ISTIOCTL.
# Written for bash 3.2 or newer (macOS's /bin/bash included).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ADDONS_DIR="${SCRIPT_DIR}/istio-add-ons"

CLUSTER_NAME="${CLUSTER_NAME:-demo}"
REG_NAME="${REG_NAME:-kind-registry}"
REG_PORT="${REG_PORT:-5001}"
APP_NAMESPACE="${APP_NAMESPACE:-demo-app}"
# The app's ingress (helm/app `gateway.api`): `gateway` (Gateway API, deployed by
# istiod with the app) or `istio` (Istio's Gateway on istio-system/istio-ingressgateway).
GATEWAY_API="${GATEWAY_API:-gateway}"
KIND_CONFIG="${KIND_CONFIG:-${SCRIPT_DIR}/kind-cluster-config.yaml}"
ROLLOUT_TIMEOUT="${ROLLOUT_TIMEOUT:-300s}"
ADDONS_NAMESPACE=istio-system

# Pinned versions, and where each comes from.
# Istio: 1.31.1, the newest 1.31 patch with published release notes
# (https://istio.io/latest/news/releases/1.31.x/announcing-1.31.1/, 2026-09-21).
# istioctl installs its own version, so this is the version istioctl must have.
# From 1.31 on, images are published on Docker Hub only: istio-operator.yaml
# sets `hub: docker.io/istio`.
ISTIO_VERSION="${ISTIO_VERSION:-1.31.1}"
# Gateway API: the standard-channel CRDs of the release Istio 1.31 is built
# against (https://github.com/kubernetes-sigs/gateway-api/releases/tag/v1.6.0).
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.6.0}"
GATEWAY_API_CRDS="https://github.com/kubernetes-sigs/gateway-api/releases/download/${GATEWAY_API_VERSION}/standard-install.yaml"
# kind: v0.32.0, whose default node image (v1.36.1) kind-cluster-config.yaml pins
# (https://github.com/kubernetes-sigs/kind/releases/tag/v0.32.0).
KIND_VERSION=v0.32.0
# Registry: the `registry:3` image of the upstream kind recipe, pinned to a tag
# (https://github.com/distribution/distribution/releases).
REGISTRY_IMAGE="${REGISTRY_IMAGE:-registry:3.0.0}"
# Loki chart: the open-source chart now lives in grafana-community/helm-charts
# (https://github.com/grafana-community/helm-charts/tree/main/charts/loki).
LOKI_CHART_REPO=https://grafana-community.github.io/helm-charts
LOKI_CHART_VERSION="${LOKI_CHART_VERSION:-18.13.4}"
# Alloy chart: grafana/helm-charts repository, chart source in grafana/alloy
# (https://github.com/grafana/alloy/blob/main/operations/helm/charts/alloy/CHANGELOG.md;
# 1.10.0 ships Alloy v1.17.0).
ALLOY_CHART_REPO=https://grafana.github.io/helm-charts
ALLOY_CHART_VERSION="${ALLOY_CHART_VERSION:-1.10.0}"

# Grafana's queries and the chart's log links select the app's logs by namespace:
# it must be a DNS label (it is also substituted into Grafana's provisioning).
if [[ ! "$APP_NAMESPACE" =~ ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$ || ${#APP_NAMESPACE} -gt 63 ]]; then
  printf 'ERROR: APP_NAMESPACE=%s is not a Kubernetes namespace name (lower-case letters, digits, -)\n' "$APP_NAMESPACE" >&2
  exit 1
fi

case "$GATEWAY_API" in
  gateway) ISTIO_SET_ARGS=() ;;
  istio) ISTIO_SET_ARGS=(--set 'components.ingressGateways.[name:istio-ingressgateway].enabled=true') ;;
  *)
    printf 'ERROR: GATEWAY_API=%s is not valid; allowed: gateway (Gateway API, the default) or istio (istio-ingressgateway)\n' "$GATEWAY_API" >&2
    exit 1
    ;;
esac

DOCKER="${DOCKER:-docker}"
KIND="${KIND:-kind}"
KUBECTL="${KUBECTL:-kubectl}"
HELM="${HELM:-helm}"
ISTIOCTL="${ISTIOCTL:-istioctl}"
KUBE_CONTEXT="kind-${CLUSTER_NAME}"

log() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}

kc() { "$KUBECTL" --context "$KUBE_CONTEXT" "$@"; }

# First 16 hex digits of a file's SHA-256 (sha256sum on Linux, shasum on macOS).
checksum() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -c1-16
  else
    shasum -a 256 "$1" | cut -c1-16
  fi
}

# ---------------------------------------------------------------------------
# Prerequisites
# ---------------------------------------------------------------------------
MISSING=""

# check_tool NAME COMMAND WRITTEN_FOR VERSION_REGEX INSTALL_HINT VERSION_COMMAND...
# A missing tool is collected (the script stops after listing all of them);
# a different version only warns.
check_tool() {
  local name=$1 cmd=$2 written_for=$3 regex=$4 hint=$5
  shift 5
  if ! command -v "$cmd" >/dev/null 2>&1; then
    printf 'MISSING: %s (this script was written for %s)\n         install: %s\n' \
      "$name" "$written_for" "$hint" >&2
    MISSING="${MISSING} ${name}"
    return 0
  fi
  local have
  have="$("$@" 2>/dev/null | grep -Eo 'v?[0-9]+\.[0-9]+\.[0-9]+' | head -n 1 || true)"
  if [[ -n "$have" && "$have" =~ $regex ]]; then
    info "${name} ${have}"
  else
    warn "${name} ${have:-(version unknown)}: this script was written for ${written_for}; carrying on"
  fi
}

check_prerequisites() {
  log "Checking prerequisites"
  check_tool docker "$DOCKER" "Docker Engine 27 or newer" '^v?(2[7-9]|[3-9][0-9])\.' \
    "https://docs.docker.com/get-started/get-docker/" \
    "$DOCKER" version --format '{{.Client.Version}}'
  check_tool kind "$KIND" "kind ${KIND_VERSION}" "^${KIND_VERSION//./\\.}\$" \
    "https://kind.sigs.k8s.io/docs/user/quick-start/#installation (go install sigs.k8s.io/kind@${KIND_VERSION})" \
    "$KIND" version
  check_tool kubectl "$KUBECTL" "kubectl v1.36 (one minor version either side works)" '^v1\.3[5-7]\.' \
    "https://kubernetes.io/docs/tasks/tools/" \
    "$KUBECTL" version --client
  check_tool helm "$HELM" "Helm v4 (v3.18 or newer works too)" '^v(4\.|3\.(1[89]|[2-9][0-9])\.)' \
    "https://helm.sh/docs/intro/install/" \
    "$HELM" version --short
  check_tool istioctl "$ISTIOCTL" "istioctl ${ISTIO_VERSION}" "^v?${ISTIO_VERSION//./\\.}\$" \
    "curl -L https://istio.io/downloadIstio | ISTIO_VERSION=${ISTIO_VERSION} sh - && export PATH=\"\$PWD/istio-${ISTIO_VERSION}/bin:\$PATH\"" \
    "$ISTIOCTL" version --remote=false
  if [[ -n "$MISSING" ]]; then
    die "missing prerequisites:${MISSING}. Install them (see above) and run this script again; nothing was created."
  fi
  if ! "$DOCKER" info >/dev/null 2>&1; then
    die "Docker is installed but does not answer ('${DOCKER} info' failed): start Docker (Docker Desktop, colima or the docker service) and run this script again."
  fi
  # Istio, the add-ons and the app need about 6 GiB; Docker Desktop's default
  # VM is often smaller.
  local mem
  mem="$("$DOCKER" info --format '{{.MemTotal}}' 2>/dev/null || true)"
  if [[ "$mem" =~ ^[0-9]+$ ]] && ((mem < 6 * 1024 * 1024 * 1024)); then
    warn "Docker has $((mem / 1024 / 1024)) MiB of memory; give it 6 GiB or more (Docker Desktop: Settings > Resources), or pods will be evicted or stay Pending."
  fi
  # Many pods on one Linux host exhaust the default inotify limits ("too many
  # open files" in pod logs): https://kind.sigs.k8s.io/docs/user/known-issues/#pod-errors-due-to-too-many-open-files
  local inotify=/proc/sys/fs/inotify/max_user_instances
  if [[ -r "$inotify" ]] && (($(cat "$inotify") < 512)); then
    warn "fs.inotify.max_user_instances is $(cat "$inotify"); raise it: sudo sysctl fs.inotify.max_user_instances=512 fs.inotify.max_user_watches=524288"
  fi
}

# ---------------------------------------------------------------------------
# Registry and cluster
# ---------------------------------------------------------------------------
start_registry() {
  log "Local registry ${REG_NAME} on 127.0.0.1:${REG_PORT}"
  local running
  running="$("$DOCKER" inspect -f '{{.State.Running}}' "$REG_NAME" 2>/dev/null || true)"
  case "$running" in
    true) info "already running" ;;
    false)
      "$DOCKER" start "$REG_NAME" >/dev/null
      info "was stopped: started it"
      ;;
    *)
      "$DOCKER" run -d --restart=always -p "127.0.0.1:${REG_PORT}:5000" --network bridge \
        --name "$REG_NAME" "$REGISTRY_IMAGE" >/dev/null
      info "started ${REGISTRY_IMAGE}"
      ;;
  esac
}

create_kind_cluster() {
  log "kind cluster ${CLUSTER_NAME}"
  if "$KIND" get clusters 2>/dev/null | grep -x "$CLUSTER_NAME" >/dev/null; then
    info "already exists"
  else
    "$KIND" create cluster --name "$CLUSTER_NAME" --config "$KIND_CONFIG" --wait 120s
  fi
  kc wait --for=condition=Ready nodes --all --timeout="$ROLLOUT_TIMEOUT" >/dev/null
  info "nodes ready (kubectl context ${KUBE_CONTEXT})"
}

# Tells containerd on every node that localhost:${REG_PORT} is the registry
# container: localhost inside a node is the node itself, not the host.
configure_registry_on_nodes() {
  log "containerd on every node pulls localhost:${REG_PORT}/* from ${REG_NAME}:5000"
  local dir="/etc/containerd/certs.d/localhost:${REG_PORT}"
  local want="[host.\"http://${REG_NAME}:5000\"]"
  local node
  for node in $("$KIND" get nodes --name "$CLUSTER_NAME"); do
    if [[ "$("$DOCKER" exec "$node" cat "${dir}/hosts.toml" 2>/dev/null || true)" == "$want" ]]; then
      info "${node}: hosts.toml already in place"
      continue
    fi
    "$DOCKER" exec "$node" mkdir -p "$dir"
    printf '%s\n' "$want" | "$DOCKER" exec -i "$node" cp /dev/stdin "${dir}/hosts.toml"
    info "${node}: wrote ${dir}/hosts.toml"
  done
}

connect_registry_to_kind_network() {
  log "Registry on the kind network"
  if [[ "$("$DOCKER" inspect -f '{{json .NetworkSettings.Networks.kind}}' "$REG_NAME")" == "null" ]]; then
    "$DOCKER" network connect kind "$REG_NAME"
    info "connected"
  else
    info "already connected"
  fi
}

# KEP-1755: tells tools which registry the cluster can pull from.
publish_registry() {
  log "ConfigMap kube-public/local-registry-hosting"
  kc apply -f - <<EOF | sed 's/^/    /'
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-registry-hosting
  namespace: kube-public
data:
  localRegistryHosting.v1: |
    host: "localhost:${REG_PORT}"
    help: "https://kind.sigs.k8s.io/docs/user/local-registry/"
EOF
}

# ---------------------------------------------------------------------------
# Gateway API and Istio
# ---------------------------------------------------------------------------
# The CRDs carry their release in the annotation gateway.networking.k8s.io/bundle-version;
# they are applied (server-side: the CRDs are too large for client-side apply's
# annotation) only when it differs.
install_gateway_api_crds() {
  log "Gateway API ${GATEWAY_API_VERSION} CRDs (standard channel)"
  local have
  have="$(kc get crd gateways.gateway.networking.k8s.io \
    -o jsonpath='{.metadata.annotations.gateway\.networking\.k8s\.io/bundle-version}' 2>/dev/null || true)"
  if [[ "$have" == "$GATEWAY_API_VERSION" ]]; then
    info "already installed"
  else
    kc apply --server-side --force-conflicts -f "$GATEWAY_API_CRDS" | sed 's/^/    /'
    kc wait --for=condition=Established crd --all --timeout="$ROLLOUT_TIMEOUT" >/dev/null
  fi
}

# The installed version and configuration (operator file and GATEWAY_API) are
# recorded in the ConfigMap istio-system/demo-istio-install; istioctl runs again
# only when they change, and then also removes a gateway no longer asked for.
install_istio() {
  log "Istio ${ISTIO_VERSION} (istio-add-ons/istio-operator.yaml, GATEWAY_API=${GATEWAY_API})"
  local operator="${ADDONS_DIR}/istio-operator.yaml" want have
  want="${ISTIO_VERSION}-$(checksum "$operator")-${GATEWAY_API}"
  have="$(kc -n "$ADDONS_NAMESPACE" get configmap demo-istio-install \
    -o jsonpath='{.data.installed}' 2>/dev/null || true)"
  if [[ "$have" == "$want" ]] && kc -n "$ADDONS_NAMESPACE" get deployment istiod >/dev/null 2>&1; then
    info "already installed with this configuration"
  else
    "$ISTIOCTL" install --context "$KUBE_CONTEXT" -y -f "$operator" ${ISTIO_SET_ARGS[@]+"${ISTIO_SET_ARGS[@]}"}
    kc -n "$ADDONS_NAMESPACE" create configmap demo-istio-install \
      --from-literal=installed="$want" --dry-run=client -o yaml | kc apply -f - >/dev/null
  fi
  wait_rollout deployment istiod
  if [[ "$GATEWAY_API" == istio ]]; then
    wait_rollout deployment istio-ingressgateway
  fi
}

label_app_namespace() {
  log "Namespace ${APP_NAMESPACE} with sidecar injection"
  kc create namespace "$APP_NAMESPACE" --dry-run=client -o yaml | kc apply -f - | sed 's/^/    /'
  kc label namespace "$APP_NAMESPACE" istio-injection=enabled --overwrite | sed 's/^/    /'
}

# ---------------------------------------------------------------------------
# Add-ons
# ---------------------------------------------------------------------------
wait_rollout() {
  local kind=$1 name=$2
  info "waiting for ${kind}/${name} ..."
  kc -n "$ADDONS_NAMESPACE" rollout status "${kind}/${name}" --timeout="$ROLLOUT_TIMEOUT" >/dev/null
  info "${kind}/${name} ready"
}

# apply_manifests FILE: kubectl apply, output indented.
apply_manifests() {
  kc apply -f "$1" | sed 's/^/    /'
}

# config_checksum DEPLOYMENT FILE...: records the checksum of the files a
# Deployment reads its configuration from on its pod template (an annotation),
# so a changed configuration rolls the pods and an unchanged one leaves them be.
# Called after the Deployment is applied, it repairs whatever an interrupted
# run left: the patch is a no-op when the annotation is already right.
config_checksum() {
  local deployment=$1 sum
  shift
  sum="$(cat "$@" | checksum /dev/stdin)"
  kc -n "$ADDONS_NAMESPACE" patch "deployment/${deployment}" --type merge \
    -p "{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"demo.istio-add-ons/config-checksum\":\"${sum}\"}}}}}" |
    sed 's/^/    /'
}

# The Grafana provisioning files are kept as plain files (the tests read them),
# written for the namespace demo-app; the ConfigMaps are generated from copies
# whose Loki/Prometheus selectors name APP_NAMESPACE instead.
grafana_configmaps() {
  local dir="${ADDONS_DIR}/grafana" out="${WORK_DIR}/grafana" file
  mkdir -p "${out}/dashboards"
  for file in "${dir}/datasources.yaml" "${dir}/dashboard-provider.yaml" "${dir}"/dashboards/*.json; do
    file="${file#"${dir}/"}"
    sed -e "s/namespace=\"demo-app\"/namespace=\"${APP_NAMESPACE}\"/g" \
      -e "s/namespace=\\\\\"demo-app\\\\\"/namespace=\\\\\"${APP_NAMESPACE}\\\\\"/g" \
      "${dir}/${file}" >"${out}/${file}"
  done
  kc -n "$ADDONS_NAMESPACE" create configmap grafana-datasources \
    --from-file=datasources.yaml="${out}/datasources.yaml" --dry-run=client -o yaml
  printf -- '---\n'
  kc -n "$ADDONS_NAMESPACE" create configmap grafana-dashboard-provider \
    --from-file=dashboard-provider.yaml="${out}/dashboard-provider.yaml" --dry-run=client -o yaml
  printf -- '---\n'
  kc -n "$ADDONS_NAMESPACE" create configmap grafana-dashboards \
    --from-file="${out}/dashboards" --dry-run=client -o yaml
}

# helm_release NAME CHART REPO VERSION VALUES: installs or upgrades a chart,
# unless the release is deployed with this chart version and these values
# (recorded in the release description).
helm_release() {
  local name=$1 chart=$2 repo=$3 version=$4 values=$5 description
  description="${chart}-${version} values-$(checksum "$values")"
  if "$HELM" --kube-context "$KUBE_CONTEXT" -n "$ADDONS_NAMESPACE" status "$name" -o json 2>/dev/null |
    grep -E "\"description\": ?\"${description}\"" >/dev/null; then
    info "${name}: ${chart} ${version} already deployed with these values"
    return 0
  fi
  info "${name}: installing ${chart} ${version} from ${repo} ..."
  "$HELM" --kube-context "$KUBE_CONTEXT" -n "$ADDONS_NAMESPACE" upgrade --install "$name" "$chart" \
    --repo "$repo" --version "$version" -f "$values" \
    --description "$description" --wait --timeout 10m >/dev/null
  info "${name}: deployed"
}

install_addons() {
  log "Add-ons in ${ADDONS_NAMESPACE}: tracing settings, Jaeger, Prometheus, Grafana, Kiali"
  # Each Deployment is applied together with (after) its ConfigMaps, then
  # stamped with their checksum: never a restart of something not there yet.
  apply_manifests "${ADDONS_DIR}/telemetry.yaml"
  apply_manifests "${ADDONS_DIR}/jaeger.yaml"
  config_checksum jaeger "${ADDONS_DIR}/jaeger.yaml"
  apply_manifests "${ADDONS_DIR}/prometheus.yaml"
  config_checksum prometheus "${ADDONS_DIR}/prometheus.yaml"
  grafana_configmaps >"${WORK_DIR}/grafana-configmaps.yaml"
  printf -- '---\n' >>"${WORK_DIR}/grafana-configmaps.yaml"
  cat "${WORK_DIR}/grafana-configmaps.yaml" "${ADDONS_DIR}/grafana.yaml" >"${WORK_DIR}/grafana-all.yaml"
  apply_manifests "${WORK_DIR}/grafana-all.yaml"
  config_checksum grafana "${WORK_DIR}/grafana-configmaps.yaml"
  apply_manifests "${ADDONS_DIR}/kiali.yaml"
  config_checksum kiali "${ADDONS_DIR}/kiali.yaml"

  log "Add-ons in ${ADDONS_NAMESPACE}: Loki and Alloy (Helm)"
  helm_release loki loki "$LOKI_CHART_REPO" "$LOKI_CHART_VERSION" "${ADDONS_DIR}/loki-values.yaml"
  helm_release alloy alloy "$ALLOY_CHART_REPO" "$ALLOY_CHART_VERSION" "${ADDONS_DIR}/alloy-values.yaml"

  log "Waiting for the add-ons"
  wait_rollout deployment jaeger
  wait_rollout deployment prometheus
  wait_rollout deployment grafana
  wait_rollout deployment kiali
  wait_rollout statefulset loki
  wait_rollout daemonset alloy
}

print_summary() {
  log "Cluster ${CLUSTER_NAME} is ready"
  cat <<EOF
    Images:   docker push localhost:${REG_PORT}/<name>:<tag>   (make build-business-logic build-front-end push)
    App:      make helm-app          (Helm release into namespace ${APP_NAMESPACE})
    Gateway:  make port-forward      (localhost:8080 -> the app's ingress gateway), then
              http://localhost:8080/demo-app/   http://localhost:8080/jaeger
              http://localhost:8080/grafana     http://localhost:8080/kiali
    Remove:   make clean-up
EOF
}

main() {
  if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,28p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    return 0
  fi
  check_prerequisites
  WORK_DIR="$(mktemp -d)"
  trap 'rm -rf "$WORK_DIR"' EXIT
  start_registry
  create_kind_cluster
  configure_registry_on_nodes
  connect_registry_to_kind_network
  publish_registry
  install_gateway_api_crds
  install_istio
  label_app_namespace
  install_addons
  print_summary
}

main "$@"
