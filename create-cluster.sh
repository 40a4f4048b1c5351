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
#      deployed by istiod with the app); for MESH_MODE=ambient the `ambient`
#      profile (istio-add-ons/istio-ambient.yaml: istio-cni and ztunnel too);
#   6. the app namespace (APP_NAMESPACE, default `demo-app`), labelled for the
#      mode: sidecar injection, or enrolled in ambient. On a cluster that ran
#      the other mode, the app's Deployments and StatefulSets are restarted so
#      their pods gain or lose their sidecars;
#   7. Istio's Grafana dashboards (mesh, service, workload, control plane,
#      ztunnel), downloaded from the pinned Istio release into the ConfigMap
#      istio-system/istio-dashboards, the service and workload ones patched to
#      read the waypoint's HTTP metrics too (ambient mode);
#   8. the add-ons in istio-system: Jaeger, Prometheus, Grafana, Kiali (manifests
#      in istio-add-ons/), Loki and Alloy (Helm charts). Grafana's queries select
#      the app's logs by APP_NAMESPACE.
# Every step checks first and skips what is already in place, so running the
# script again finishes without error and changes nothing; a run interrupted
# anywhere is completed by the next one.
#
# Usage: ./create-cluster.sh        (or `make create-cluster`)
# Settings (environment): CLUSTER_NAME, REG_NAME, REG_PORT, APP_NAMESPACE,
# MESH_MODE (sidecar or ambient), GATEWAY_API (gateway or istio),
# ISTIO_VERSION, GATEWAY_API_VERSION, LOKI_CHART_VERSION, ALLOY_CHART_VERSION,
# ROLLOUT_TIMEOUT, and the commands DOCKER, KIND, KUBECTL, HELM, ISTIOCTL, CURL, JQ.
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
# Istio's data plane (helm/app `mesh.mode`): `sidecar` (an Envoy in every app
# pod) or `ambient` (ztunnel on every node, waypoints for L7). Running the
# script with the other mode converts the cluster (install_istio, label_app_namespace).
MESH_MODE="${MESH_MODE:-sidecar}"
KIND_CONFIG="${KIND_CONFIG:-${SCRIPT_DIR}/kind-cluster-config.yaml}"
ROLLOUT_TIMEOUT="${ROLLOUT_TIMEOUT:-300s}"
ADDONS_NAMESPACE=istio-system

# Pinned versions, and where each comes from.
# Istio: 1.31.1, the newest 1.31 patch with published release notes
# (https://istio.io/latest/news/releases/1.31.x/announcing-1.31.1/, 2026-09-21).
# istioctl installs its own version, so this is the version istioctl must have.
# Its images come from the hub istio-operator.yaml names (`docker.io/istio`;
# Istio's own registry.istio.io/release, its default since istio/istio#59364,
# holds the same images).
ISTIO_VERSION="${ISTIO_VERSION:-1.31.1}"
# Gateway API: the standard-channel CRDs of the release Istio 1.31 is built
# against (https://github.com/kubernetes-sigs/gateway-api/releases/tag/v1.6.0).
GATEWAY_API_VERSION="${GATEWAY_API_VERSION:-v1.6.0}"
GATEWAY_API_CRDS="https://github.com/kubernetes-sigs/gateway-api/releases/download/${GATEWAY_API_VERSION}/standard-install.yaml"
# Istio's Grafana dashboards, fetched as published from the Istio release above
# (raw files of the tag ISTIO_VERSION): the mesh, service, workload, control
# plane ("pilot") and ztunnel dashboards in manifests/addons/dashboards/, the
# folder Istio's samples/addons/grafana.yaml provisions them from. File names
# read on the release-1.31 branch (commit a8d7012191e, 2026-08-20) and at the
# tag 1.31.0-rc.0: the generated (jsonnet) boards end in .gen.json. The service
# and workload boards are patched (ISTIO_DASHBOARDS_PATCHED, with
# istio-add-ons/istio-dashboards-waypoint.jq: why is written there).
ISTIO_DASHBOARDS_URL="https://raw.githubusercontent.com/istio/istio/${ISTIO_VERSION}/manifests/addons/dashboards"
ISTIO_DASHBOARDS="istio-mesh-dashboard.gen.json istio-service-dashboard.json istio-workload-dashboard.json pilot-dashboard.gen.json ztunnel-dashboard.gen.json"
ISTIO_DASHBOARDS_PATCHED="istio-service-dashboard.json istio-workload-dashboard.json"
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

# The tools' versions the scripts expect (tool_fits below; this script warns
# about others, `make preflight` fails on them). kind and istioctl: exactly
# KIND_VERSION and ISTIO_VERSION above.
# Docker Engine: the oldest release this script was written for (its first
# prerequisite check, and the README's prerequisites); no upstream document
# sets it.
DOCKER_MIN_VERSION=27.0.0
# kubectl: Kubernetes supports a kubectl within one minor version of the API
# server (https://kubernetes.io/releases/version-skew-policy/#kubectl); the
# server is the node image's Kubernetes, read from kind-cluster-config.yaml.
KUBE_NODE_VERSION="$(sed -n 's|^ *image: *kindest/node:\(v[0-9][0-9.]*\).*|\1|p' "$KIND_CONFIG" 2>/dev/null | head -n 1)"
# Helm: v4 is what the walkthrough uses; v3.18 is the oldest this script was
# written for (its first prerequisite check, and the README's prerequisites).
# Helm's own policy (https://helm.sh/docs/topics/version_skew/) only promises
# that a release works with the Kubernetes minor it was compiled against and
# the three below it, so a current Helm 4 is the safe choice for v1.36.
HELM_MIN_VERSION=3.18.0
# Docker's memory and CPUs (the VM's, on Docker Desktop and colima). An
# estimate, not a measurement: the running stack (control plane ~1.5 GiB,
# Istio with its gateways and sidecars ~0.7 GiB, Prometheus, Grafana, Kiali,
# Jaeger, Loki and Alloy ~1.6 GiB, the app ~0.2 GiB) takes about 4 GiB, and
# `make up` builds the Rust images in the same Docker (fat LTO: ~2 GiB at
# link time). The CPU requests of every pod fit in one CPU per node, but with
# one CPU the build and a dozen pods starting at once compete for it and the
# rollouts risk ROLLOUT_TIMEOUT. 8 GB and 4 CPUs are comfortable (README).
DOCKER_MIN_MEMORY_GIB=6
DOCKER_MIN_CPUS=2

# docker_memory_short BYTES: true when `docker info`'s MemTotal (BYTES) is that of
# a Docker set to less than DOCKER_MIN_MEMORY_GIB. MemTotal is what the VM's
# kernel leaves, below the setting: Docker Desktop set to 8 GB reports about
# 7.65 GiB (4 % less). So 90 % of the setting passes: a Docker set to 6 GB
# (about 5.7 GiB reported) does, one set to 5 GB (about 4.8 GiB) does not.
docker_memory_short() {
  (($1 * 10 < DOCKER_MIN_MEMORY_GIB * 1024 * 1024 * 1024 * 9))
}

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

# The IstioOperator files for the mode, in the order istioctl merges them.
case "$MESH_MODE" in
  sidecar) ISTIO_OPERATOR_FILES="istio-operator.yaml" ;;
  ambient) ISTIO_OPERATOR_FILES="istio-operator.yaml istio-ambient.yaml" ;;
  *)
    printf 'ERROR: MESH_MODE=%s is not valid; allowed: sidecar (an Envoy sidecar in every app pod, the default) or ambient (ztunnel on every node, a waypoint for L7)\n' "$MESH_MODE" >&2
    exit 1
    ;;
esac

DOCKER="${DOCKER:-docker}"
KIND="${KIND:-kind}"
KUBECTL="${KUBECTL:-kubectl}"
HELM="${HELM:-helm}"
ISTIOCTL="${ISTIOCTL:-istioctl}"
CURL="${CURL:-curl}"
JQ="${JQ:-jq}"
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
# Prerequisites (shared with scripts/preflight.sh, which sources this script)
# ---------------------------------------------------------------------------
TOOLS="docker kind kubectl helm istioctl"

# tool_command TOOL: the command that runs it (DOCKER, KIND, ... override them).
tool_command() {
  case $1 in
    docker) printf '%s' "$DOCKER" ;;
    kind) printf '%s' "$KIND" ;;
    kubectl) printf '%s' "$KUBECTL" ;;
    helm) printf '%s' "$HELM" ;;
    istioctl) printf '%s' "$ISTIOCTL" ;;
  esac
}

# tool_version TOOL: its version (x.y.z, with a v when the tool prints one), or nothing.
tool_version() {
  local cmd
  cmd="$(tool_command "$1")"
  case $1 in
    docker) "$cmd" version --format '{{.Client.Version}}' ;;
    kind) "$cmd" version ;;
    kubectl) "$cmd" version --client ;;
    helm) "$cmd" version --short ;;
    istioctl) "$cmd" version --remote=false ;;
  esac 2>/dev/null | grep -Eo 'v?[0-9]+\.[0-9]+\.[0-9]+' | head -n 1 || true
}

# tool_wanted TOOL: the version the scripts expect, in words.
tool_wanted() {
  case $1 in
    docker) printf 'Docker Engine %s or newer' "${DOCKER_MIN_VERSION%%.*}" ;;
    kind) printf 'kind %s' "$KIND_VERSION" ;;
    kubectl) printf 'kubectl %s (one minor version either side works)' "${KUBE_NODE_VERSION%.*}" ;;
    helm) printf 'Helm v4 (v%s or newer works too)' "${HELM_MIN_VERSION%.*}" ;;
    istioctl) printf 'istioctl %s' "$ISTIO_VERSION" ;;
  esac
}

# version_at_least HAVE MIN: true when version HAVE (x.y.z, v optional) >= MIN.
version_at_least() {
  local have=${1#v} min=${2#v} i h m
  local IFS=.
  # shellcheck disable=SC2206  # split on the dots on purpose
  local -a hs=($have) ms=($min)
  for i in 0 1 2; do
    h=${hs[i]:-0} m=${ms[i]:-0}
    ((10#$h > 10#$m)) && return 0
    ((10#$h < 10#$m)) && return 1
  done
  return 0
}

# tool_fits TOOL VERSION: true when VERSION is one the scripts expect.
tool_fits() {
  local tool=$1 have=${2#v} minor node_minor
  [[ "$have" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || return 1
  case $tool in
    docker) version_at_least "$have" "$DOCKER_MIN_VERSION" ;;
    kind) [[ "v${have}" == "$KIND_VERSION" ]] ;;
    kubectl)
      minor=${have#*.} minor=${minor%%.*}
      node_minor=${KUBE_NODE_VERSION#v*.} node_minor=${node_minor%%.*}
      [[ "${have%%.*}" == "1" && "$node_minor" =~ ^[0-9]+$ ]] &&
        ((minor >= node_minor - 1 && minor <= node_minor + 1))
      ;;
    helm) version_at_least "$have" "$HELM_MIN_VERSION" ;;
    istioctl) [[ "$have" == "$ISTIO_VERSION" ]] ;;
  esac
}

# tool_install_hint TOOL: where to get it.
tool_install_hint() {
  case $1 in
    docker) printf 'https://docs.docker.com/get-started/get-docker/' ;;
    kind) printf 'https://kind.sigs.k8s.io/docs/user/quick-start/#installation (go install sigs.k8s.io/kind@%s)' "$KIND_VERSION" ;;
    kubectl) printf 'https://kubernetes.io/docs/tasks/tools/' ;;
    helm) printf 'https://helm.sh/docs/intro/install/' ;;
    istioctl)
      # shellcheck disable=SC2016  # $PWD and $PATH are for the reader's shell
      printf 'curl -L https://istio.io/downloadIstio | ISTIO_VERSION=%s sh - && export PATH="$PWD/istio-%s/bin:$PATH"' \
        "$ISTIO_VERSION" "$ISTIO_VERSION"
      ;;
  esac
}

MISSING=""

# check_tool TOOL: a missing tool is collected (the script stops after listing
# all of them); a different version only warns.
check_tool() {
  local name=$1 have
  if ! command -v "$(tool_command "$name")" >/dev/null 2>&1; then
    printf 'MISSING: %s (this script was written for %s)\n         install: %s\n' \
      "$name" "$(tool_wanted "$name")" "$(tool_install_hint "$name")" >&2
    MISSING="${MISSING} ${name}"
    return 0
  fi
  have="$(tool_version "$name")"
  if tool_fits "$name" "$have"; then
    info "${name} ${have}"
  else
    warn "${name} ${have:-(version unknown)}: this script was written for $(tool_wanted "$name"); carrying on"
  fi
}

check_prerequisites() {
  log "Checking prerequisites"
  local tool
  for tool in $TOOLS; do
    check_tool "$tool"
  done
  # curl only downloads (Istio's dashboards): no version to check.
  if ! command -v "$CURL" >/dev/null 2>&1; then
    printf 'MISSING: curl (downloads Istio'"'"'s Grafana dashboards)\n         install: https://curl.se/download.html (or the system'"'"'s package manager)\n' >&2
    MISSING="${MISSING} curl"
  fi
  # jq patches two of Istio's dashboards (istio-dashboards-waypoint.jq; 1.6 or
  # newer: it uses walk).
  if ! command -v "$JQ" >/dev/null 2>&1; then
    printf 'MISSING: jq 1.6 or newer (patches two of Istio'"'"'s Grafana dashboards)\n         install: https://jqlang.org/download/ (macOS 15 and newer have it; Debian/Ubuntu: apt-get install jq)\n' >&2
    MISSING="${MISSING} jq"
  fi
  if [[ -n "$MISSING" ]]; then
    die "missing prerequisites:${MISSING}. Install them (see above) and run this script again; nothing was created."
  fi
  if ! "$DOCKER" info >/dev/null 2>&1; then
    die "Docker is installed but does not answer ('${DOCKER} info' failed): start Docker (Docker Desktop, colima or the docker service) and run this script again."
  fi
  # Docker Desktop's default VM is often smaller than the stack needs
  # (DOCKER_MIN_MEMORY_GIB above).
  local mem
  mem="$("$DOCKER" info --format '{{.MemTotal}}' 2>/dev/null || true)"
  if [[ "$mem" =~ ^[0-9]+$ ]] && docker_memory_short "$mem"; then
    warn "Docker has $((mem / 1024 / 1024)) MiB of memory; set it to ${DOCKER_MIN_MEMORY_GIB} GB or more (Docker Desktop: Settings > Resources), or pods will be evicted or stay Pending."
  fi
  local cpus
  cpus="$("$DOCKER" info --format '{{.NCPU}}' 2>/dev/null || true)"
  if [[ "$cpus" =~ ^[0-9]+$ ]] && ((cpus < DOCKER_MIN_CPUS)); then
    warn "Docker has ${cpus} CPU(s); give it ${DOCKER_MIN_CPUS} or more (Docker Desktop: Settings > Resources), or rollouts may time out."
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

# The installed version and configuration (operator files, GATEWAY_API and
# MESH_MODE) are recorded in the ConfigMap istio-system/demo-istio-install;
# istioctl runs again only when they change, and then also removes what is no
# longer asked for (a gateway; ztunnel and istio-cni when going back to sidecar
# mode).
install_istio() {
  log "Istio ${ISTIO_VERSION} (MESH_MODE=${MESH_MODE}: istio-add-ons/${ISTIO_OPERATOR_FILES// / + istio-add-ons/}, GATEWAY_API=${GATEWAY_API})"
  local file want have
  local -a files=()
  # The record: version, each file's checksum (ambient mode adds
  # istio-ambient.yaml's, so a change of mode reinstalls) and the ingress
  # variant; sidecar mode's is the one it had before ambient mode existed, so
  # an existing cluster is not reinstalled for nothing.
  want="${ISTIO_VERSION}"
  for file in $ISTIO_OPERATOR_FILES; do
    files+=(-f "${ADDONS_DIR}/${file}")
    want="${want}-$(checksum "${ADDONS_DIR}/${file}")"
  done
  want="${want}-${GATEWAY_API}"
  have="$(kc -n "$ADDONS_NAMESPACE" get configmap demo-istio-install \
    -o jsonpath='{.data.installed}' 2>/dev/null || true)"
  if [[ "$have" == "$want" ]] && kc -n "$ADDONS_NAMESPACE" get deployment istiod >/dev/null 2>&1; then
    info "already installed with this configuration"
  else
    "$ISTIOCTL" install --context "$KUBE_CONTEXT" -y "${files[@]}" ${ISTIO_SET_ARGS[@]+"${ISTIO_SET_ARGS[@]}"}
    kc -n "$ADDONS_NAMESPACE" create configmap demo-istio-install \
      --from-literal=installed="$want" --dry-run=client -o yaml | kc apply -f - >/dev/null
  fi
  wait_rollout deployment istiod
  if [[ "$GATEWAY_API" == istio ]]; then
    wait_rollout deployment istio-ingressgateway
  fi
  local daemonset
  for daemonset in istio-cni-node ztunnel; do
    if [[ "$MESH_MODE" == ambient ]]; then
      # Each node's istio-cni agent sets up the traffic redirection of new
      # pods, and its ztunnel carries their traffic: both must be up on every
      # node before the app's pods start.
      wait_rollout daemonset "$daemonset"
    elif kc -n "$ADDONS_NAMESPACE" get daemonset "$daemonset" >/dev/null 2>&1; then
      # istioctl prunes only what carries its own version's labels: after a
      # change of ISTIO_VERSION and mode together the old ones stay.
      warn "daemonset ${ADDONS_NAMESPACE}/${daemonset} is left over from ambient mode: deleting it"
      kc -n "$ADDONS_NAMESPACE" delete daemonset "$daemonset" --ignore-not-found | sed 's/^/    /'
    fi
  done
}

# The mode the app's pods were started in is recorded on the namespace (the
# annotation demo.istio-add-ons/mesh-mode), written only once they were
# restarted: a run interrupted after the relabelling restarts them on the next
# run. No annotation: the namespace predates ambient mode (sidecar).
NAMESPACE_MODE_ANNOTATION=demo.istio-add-ons/mesh-mode

# The namespace labels of each mode. The other mode's label is removed (a
# trailing `-`; kubectl only notes a label that is not there), so the
# namespace is in exactly one mode.
namespace_labels() {
  case "$MESH_MODE" in
    sidecar) printf '%s\n' istio-injection=enabled istio.io/dataplane-mode- ;;
    ambient) printf '%s\n' istio.io/dataplane-mode=ambient istio-injection- ;;
  esac
}

label_app_namespace() {
  log "Namespace ${APP_NAMESPACE} (MESH_MODE=${MESH_MODE})"
  kc create namespace "$APP_NAMESPACE" --dry-run=client -o yaml | kc apply -f - | sed 's/^/    /'
  # shellcheck disable=SC2046  # one argument per label, none has spaces
  kc label namespace "$APP_NAMESPACE" $(namespace_labels) --overwrite 2>&1 | sed 's/^/    /'
  local was workload
  was="$(kc get namespace "$APP_NAMESPACE" \
    -o jsonpath="{.metadata.annotations.${NAMESPACE_MODE_ANNOTATION//./\\.}}" 2>/dev/null || true)"
  was="${was:-sidecar}"
  if [[ "$was" != "$MESH_MODE" ]]; then
    # Sidecars are added or removed only when a pod is created.
    for workload in $(kc -n "$APP_NAMESPACE" get deployments,statefulsets -o name); do
      info "${workload}: restarting (its pods ran in ${was} mode)"
      kc -n "$APP_NAMESPACE" rollout restart "$workload" | sed 's/^/    /'
    done
    for workload in $(kc -n "$APP_NAMESPACE" get deployments,statefulsets -o name); do
      kc -n "$APP_NAMESPACE" rollout status "$workload" --timeout="$ROLLOUT_TIMEOUT" >/dev/null
      info "${workload}: ready"
    done
  fi
  kc annotate namespace "$APP_NAMESPACE" "${NAMESPACE_MODE_ANNOTATION}=${MESH_MODE}" --overwrite | sed 's/^/    /'
}

# ---------------------------------------------------------------------------
# Istio's Grafana dashboards
# ---------------------------------------------------------------------------
# Where the dashboards come from (release, files and the patch's checksum),
# recorded on the ConfigMap as the annotation demo.istio-add-ons/source: they
# are downloaded, patched and applied again only when it differs.
ISTIO_DASHBOARDS_PATCH="${ADDONS_DIR}/istio-dashboards-waypoint.jq"
ISTIO_DASHBOARDS_SOURCE="${ISTIO_VERSION}:${ISTIO_DASHBOARDS// /,}:$(checksum "$ISTIO_DASHBOARDS_PATCH")"

# The five files are about 290 KB: within a ConfigMap's 1 MiB, but over the
# 256 KiB of annotations client-side apply's last-applied copy would need, so
# the ConfigMap is applied server-side.
install_istio_dashboards() {
  log "Istio ${ISTIO_VERSION}'s Grafana dashboards (ConfigMap ${ADDONS_NAMESPACE}/istio-dashboards)"
  local dir="${WORK_DIR}/istio-dashboards" have file url error
  have="$(kc -n "$ADDONS_NAMESPACE" get configmap istio-dashboards \
    -o jsonpath='{.metadata.annotations.demo\.istio-add-ons/source}' 2>/dev/null || true)"
  if [[ "$have" == "$ISTIO_DASHBOARDS_SOURCE" ]]; then
    info "already in place"
    return 0
  fi
  mkdir -p "$dir"
  for file in $ISTIO_DASHBOARDS; do
    url="${ISTIO_DASHBOARDS_URL}/${file}"
    if ! error="$("$CURL" -fsSL --retry 3 -o "${dir}/${file}" "$url" 2>&1)"; then
      die "could not download Istio's dashboard ${file} from ${url}: ${error%%$'\n'*}
       Check the network (behind a proxy: HTTPS_PROXY) and that ISTIO_VERSION=${ISTIO_VERSION} is a published Istio release (https://github.com/istio/istio/tags), then run this script again: it carries on from here."
    fi
    if [[ "$(head -c 1 "${dir}/${file}")" != "{" ]]; then
      die "${url} did not answer with a dashboard (JSON): a proxy or captive portal in the way? Run this script again once it is reachable."
    fi
    info "downloaded ${file}"
  done
  for file in $ISTIO_DASHBOARDS_PATCHED; do
    if ! error="$("$JQ" -f "$ISTIO_DASHBOARDS_PATCH" "${dir}/${file}" 2>&1 >"${WORK_DIR}/${file}")"; then
      die "could not patch Istio's dashboard ${file} (${ISTIO_DASHBOARDS_PATCH#"${SCRIPT_DIR}/"}): ${error%%$'\n'*}"
    fi
    mv "${WORK_DIR}/${file}" "${dir}/${file}"
    info "patched ${file}: its HTTP panels read the waypoint's metrics too"
  done
  kc -n "$ADDONS_NAMESPACE" create configmap istio-dashboards --from-file="$dir" --dry-run=client -o yaml |
    kc annotate --local -f - -o yaml "demo.istio-add-ons/source=${ISTIO_DASHBOARDS_SOURCE}" |
    kc apply --server-side -f - | sed 's/^/    /'
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

# Prometheus' pod joins the mesh in ambient mode only, by its own label
# istio.io/dataplane-mode=ambient (prometheus.yaml says why it needs to); in
# sidecar mode it carries none. The label is set here, per mode, on the pod
# template, so a change of mode recreates the pod, after install_istio: istio-cni
# redirects a labelled pod's traffic into the node's ztunnel when the pod is
# created, and a pod left running when leaving ambient mode would keep that
# redirection to a ztunnel istioctl has removed (no scrape would reach a target).
# `kubectl apply` of prometheus.yaml leaves a label it never set alone.
prometheus_mesh_label() {
  local value=null
  if [[ "$MESH_MODE" == ambient ]]; then
    value='"ambient"'
  fi
  kc -n "$ADDONS_NAMESPACE" patch deployment/prometheus --type merge \
    -p "{\"spec\":{\"template\":{\"metadata\":{\"labels\":{\"istio.io/dataplane-mode\":${value}}}}}}" |
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
  prometheus_mesh_label
  config_checksum prometheus "${ADDONS_DIR}/prometheus.yaml"
  grafana_configmaps >"${WORK_DIR}/grafana-configmaps.yaml"
  printf -- '---\n' >>"${WORK_DIR}/grafana-configmaps.yaml"
  cat "${WORK_DIR}/grafana-configmaps.yaml" "${ADDONS_DIR}/grafana.yaml" >"${WORK_DIR}/grafana-all.yaml"
  apply_manifests "${WORK_DIR}/grafana-all.yaml"
  # Istio's dashboards (ConfigMap istio-dashboards, applied before) count by their source.
  printf '%s\n' "$ISTIO_DASHBOARDS_SOURCE" >"${WORK_DIR}/istio-dashboards.source"
  config_checksum grafana "${WORK_DIR}/grafana-configmaps.yaml" "${WORK_DIR}/istio-dashboards.source"
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
  log "Cluster ${CLUSTER_NAME} is ready (MESH_MODE=${MESH_MODE})"
  cat <<EOF
    Images:   docker push localhost:${REG_PORT}/<name>:<tag>   (make build-business-logic build-front-end push)
    App:      make helm-app MESH_MODE=${MESH_MODE}   (Helm release into namespace ${APP_NAMESPACE}; the chart's
              mesh.mode must match the cluster's: routes, policies and, in ambient mode, the waypoint)
    Gateway:  make port-forward      (localhost:8080 -> the app's ingress gateway), then
              http://localhost:8080/demo-app/   http://localhost:8080/jaeger
              http://localhost:8080/grafana     http://localhost:8080/kiali
              http://localhost:8080/prometheus
    Remove:   make clean-up
EOF
}

main() {
  if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    # The comment block at the top of this file.
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
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
  install_istio_dashboards
  install_addons
  print_summary
}

# Run unless sourced (scripts/preflight.sh sources it for the settings and checks above).
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
