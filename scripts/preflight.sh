#!/usr/bin/env bash
# Checks, before `make up`, what this machine needs for the cluster
# walkthrough, and says what is missing, with a hint for each:
#   1. Docker: installed, running, recent enough, with enough memory and CPUs;
#   2. kind, kubectl, helm and istioctl at the versions create-cluster.sh expects,
#      and jq;
#   3. free host ports: the local registry's (REG_PORT) and any port
#      kind-cluster-config.yaml maps to the host; GATEWAY_PORT (make
#      port-forward) only warns;
#   4. every pinned image and chart resolves: the kind node image, the registry,
#      Istio's images (for MESH_MODE=ambient those of the ambient profile),
#      the add-ons' images, the app chart's PostgreSQL image, the
#      Dockerfile's base images (docker manifest inspect), the Loki and
#      Alloy charts (helm show chart), the Gateway API CRDs and Istio's Grafana
#      dashboards (curl).
# It changes nothing. Exit status 0 when every check passes, 1 otherwise.
#
# Usage: scripts/preflight.sh [--skip-pins]     (or `make preflight [SKIP_PINS=1]`)
#   --skip-pins (or PREFLIGHT_SKIP_PINS=1): leave out step 4, which needs the
#   network and counts as one pull per Docker Hub image against Docker Hub's
#   rate limit for anonymous pulls.
# Settings (environment): those of create-cluster.sh (CLUSTER_NAME, REG_NAME,
# REG_PORT, KIND_CONFIG, MESH_MODE, the versions, the commands DOCKER, KIND,
# KUBECTL, HELM, ISTIOCTL), GATEWAY_PORT, and CURL.
# Every version and image comes from its one home: create-cluster.sh (sourced
# here; its main does not run), kind-cluster-config.yaml, istio-add-ons/,
# helm/app/charts/*/values.yaml and the Dockerfile.
# Written for bash 3.2 or newer (macOS's /bin/bash included).
set -euo pipefail

# shellcheck source=create-cluster.sh disable=SC1091  # followed when both files are checked (make lint-shell)
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/create-cluster.sh"
# From here on SCRIPT_DIR is the repository (create-cluster.sh's folder).

CURL="${CURL:-curl}"
SKIP_PINS="${PREFLIGHT_SKIP_PINS:-}"

PASSED=0
FAILED=""
WARNED=0

passed() {
  printf '    ok    %s\n' "$1"
  PASSED=$((PASSED + 1))
}

# failed SHORT_NAME WHAT HINT: a failed check (SHORT_NAME goes into the summary).
failed() {
  printf '    FAIL  %s\n          hint: %s\n' "$2" "$3"
  FAILED="${FAILED:+${FAILED}, }$1"
}

# warned WHAT HINT: worth knowing, but `make up` can work.
warned() {
  printf '    warn  %s\n          hint: %s\n' "$1" "$2"
  WARNED=$((WARNED + 1))
}

have_command() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------------------
# Docker and the tools
# ---------------------------------------------------------------------------
# check_tool_version TOOL: installed, and at the version the scripts expect.
check_tool_version() {
  local name=$1 have
  if ! have_command "$(tool_command "$name")"; then
    failed "$name" "${name}: not found (the scripts expect $(tool_wanted "$name"))" \
      "install it: $(tool_install_hint "$name")"
    return 1
  fi
  have="$(tool_version "$name")"
  if tool_fits "$name" "$have"; then
    passed "${name} ${have}"
  else
    failed "$name" "${name} ${have:-(version unknown)}: the scripts expect $(tool_wanted "$name")" \
      "install that version: $(tool_install_hint "$name")"
  fi
}

# DOCKER_ANSWERS: set when `docker info` works (the memory, CPU and port
# checks ask the daemon).
DOCKER_ANSWERS=""

check_docker() {
  log "Docker"
  check_tool_version docker || return 0
  if ! "$DOCKER" info >/dev/null 2>&1; then
    failed "Docker not running" "Docker is installed but does not answer ('${DOCKER} info' failed)" \
      "start it: Docker Desktop, 'colima start', or 'sudo systemctl start docker'"
    return 0
  fi
  DOCKER_ANSWERS=1
  passed "Docker is running"

  local mem cpus settings="Docker Desktop: Settings > Resources; colima: colima start --memory 8 --cpu 4"
  mem="$("$DOCKER" info --format '{{.MemTotal}}' 2>/dev/null || true)"
  if [[ ! "$mem" =~ ^[0-9]+$ ]]; then
    warned "Docker's memory is unknown ('${DOCKER} info' gave '${mem}')" \
      "the stack needs Docker set to ${DOCKER_MIN_MEMORY_GIB} GB or more"
  elif docker_memory_short "$mem"; then
    failed "Docker memory" \
      "Docker has $((mem / 1024 / 1024)) MiB of memory; kind, Istio, the add-ons and the image build need Docker set to ${DOCKER_MIN_MEMORY_GIB} GB or more (8 GB is comfortable)" \
      "set Docker's memory to ${DOCKER_MIN_MEMORY_GIB} GB or more (${settings})"
  else
    passed "Docker memory: $((mem / 1024 / 1024)) MiB (Docker set to ${DOCKER_MIN_MEMORY_GIB} GB or more needed; it reports a little less)"
  fi
  cpus="$("$DOCKER" info --format '{{.NCPU}}' 2>/dev/null || true)"
  if [[ ! "$cpus" =~ ^[0-9]+$ ]]; then
    warned "Docker's CPUs are unknown ('${DOCKER} info' gave '${cpus}')" \
      "the stack needs ${DOCKER_MIN_CPUS} CPUs or more"
  elif ((cpus < DOCKER_MIN_CPUS)); then
    failed "Docker CPUs" "Docker has ${cpus} CPU(s); the stack needs ${DOCKER_MIN_CPUS} or more (4 are comfortable)" \
      "$settings"
  else
    passed "Docker CPUs: ${cpus} (${DOCKER_MIN_CPUS} or more needed)"
  fi
}

check_tools() {
  log "kind, kubectl, helm, istioctl, jq"
  local tool
  for tool in kind kubectl helm istioctl; do
    check_tool_version "$tool" || true
  done
  if have_command "$JQ"; then
    passed "$("$JQ" --version 2>/dev/null || echo jq) (create-cluster.sh patches two of Istio's dashboards with it; 1.6 or newer)"
  else
    failed "jq" "jq: not found (create-cluster.sh patches two of Istio's dashboards with it; 1.6 or newer)" \
      "install it: https://jqlang.org/download/ (macOS 15 and newer have it; Debian/Ubuntu: apt-get install jq)"
  fi
}

# ---------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------
# port_in_use PORT: something accepts connections on 127.0.0.1:PORT.
port_in_use() {
  (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

port_hint() {
  printf 'stop the program that listens there (lsof -nP -iTCP:%s -sTCP:LISTEN names it)' "$1"
}

# The ports kind publishes on the host: extraPortMappings' hostPort and a fixed
# networking.apiServerPort (kind picks a free one when it is not set).
kind_host_ports() {
  sed -n -e 's/^ *-\{0,1\} *hostPort: *\([0-9][0-9]*\).*/\1/p' \
    -e 's/^ *apiServerPort: *\([0-9][0-9]*\).*/\1/p' "$KIND_CONFIG"
}

# check_url URL SHORT WHAT HINT: a release file create-cluster.sh downloads
# answers (one byte is asked for); warns when curl is missing.
check_url() {
  local url=$1 short=$2 what=$3 hint=$4 error
  if ! have_command "$CURL"; then
    warned "${what}: not checked (curl is missing)" "install curl: create-cluster.sh downloads it with curl"
  elif error="$("$CURL" -fsSL --range 0-0 -o /dev/null "$url" 2>&1)"; then
    passed "${what} (${url})"
  else
    failed "$short" "${what} ${url} (create-cluster.sh) does not resolve: ${error%%$'\n'*}" "$hint"
  fi
}

# check_port PORT WHAT OURS OURS_WHAT HINT: passes when PORT is free, or
# when OURS is non-empty (what holds it is this walkthrough's own); fails,
# naming WHAT and ending the hint with HINT, when another program holds it.
check_port() {
  local port=$1 what=$2 ours=$3 ours_what=$4 hint=$5
  if ! port_in_use "$port"; then
    passed "port ${port} (${what}) is free"
  elif [[ -n "$ours" ]]; then
    passed "port ${port} ${ours_what}"
  else
    failed "port ${port}" "port ${port} (${what}) is in use by another program" "$(port_hint "$port")${hint}"
  fi
}

check_ports() {
  log "Free ports on this machine"
  local port registry_running="" cluster_exists=""
  if [[ -n "$DOCKER_ANSWERS" && "$("$DOCKER" inspect -f '{{.State.Running}}' "$REG_NAME" 2>/dev/null || true)" == true ]]; then
    registry_running=1
  fi
  if have_command "$KIND" && "$KIND" get clusters 2>/dev/null | grep -x "$CLUSTER_NAME" >/dev/null; then
    cluster_exists=1
  fi

  check_port "$REG_PORT" "REG_PORT, the local registry ${REG_NAME}" "$registry_running" \
    "(REG_PORT) is the running registry ${REG_NAME}'s" \
    "; the images and the chart expect the registry at localhost:${REG_PORT}"
  for port in $(kind_host_ports); do
    check_port "$port" "${KIND_CONFIG##*/} maps it to the host" "$cluster_exists" \
      "(${KIND_CONFIG##*/}) belongs to the existing kind cluster ${CLUSTER_NAME}" \
      ", or change the mapping in ${KIND_CONFIG##*/}"
  done

  if [[ -n "${GATEWAY_PORT:-}" ]]; then
    if port_in_use "$GATEWAY_PORT"; then
      warned "port ${GATEWAY_PORT} (GATEWAY_PORT, make port-forward) is in use: fine if it is this cluster's make port-forward" \
        "otherwise $(port_hint "$GATEWAY_PORT"), or use make port-forward GATEWAY_PORT=<port> (the dashboards' links keep pointing at 8080)"
    else
      passed "port ${GATEWAY_PORT} (GATEWAY_PORT, make port-forward) is free"
    fi
  fi
}

# ---------------------------------------------------------------------------
# Pinned images and charts
# ---------------------------------------------------------------------------
# where FILE: appends "<tab>FILE" to every line of its input.
where() { awk -v file="$1" '{ print $0 "\t" file }'; }

# pinned_images: "IMAGE<tab>WHERE" for every image the walkthrough pulls, each
# read from the file that pins it.
pinned_images() {
  local file hub
  sed -n 's/^ *image: *\([^ ]\{1,\}\) *$/\1/p' "$KIND_CONFIG" | where "${KIND_CONFIG##*/}"
  printf '%s\tcreate-cluster.sh (REGISTRY_IMAGE)\n' "$REGISTRY_IMAGE"
  hub="$(sed -n 's/^ *hub: *\([^ ]\{1,\}\) *$/\1/p' "${ADDONS_DIR}/istio-operator.yaml" | head -n 1)"
  if [[ "$MESH_MODE" == ambient ]]; then
    # The ambient profile adds istio-cni and ztunnel, and pulls every Istio
    # image in the variant istio-ambient.yaml names.
    local variant image
    variant="$(sed -n 's/^ *variant: *\([^ ]\{1,\}\) *$/\1/p' "${ADDONS_DIR}/istio-ambient.yaml" | head -n 1)"
    for image in pilot proxyv2 install-cni ztunnel; do
      printf '%s/%s:%s%s\tistio-add-ons/istio-operator.yaml (hub) + ISTIO_VERSION + istio-ambient.yaml (variant)\n' \
        "$hub" "$image" "$ISTIO_VERSION" "${variant:+-${variant}}"
    done
  else
    printf '%s/pilot:%s\tistio-add-ons/istio-operator.yaml (hub) + ISTIO_VERSION\n' "$hub" "$ISTIO_VERSION"
    printf '%s/proxyv2:%s\tistio-add-ons/istio-operator.yaml (hub) + ISTIO_VERSION\n' "$hub" "$ISTIO_VERSION"
  fi
  for file in "${ADDONS_DIR}"/*.yaml; do
    sed -n 's/^ *-\{0,1\} *image: *"\{0,1\}\([^ "]\{1,\}\)"\{0,1\} *$/\1/p' "$file" |
      where "istio-add-ons/${file##*/}"
  done
  # The app chart's subcharts: `image.repository` and `image.tag` of those
  # pulled from a registry (the services' images are built and pushed by make).
  for file in "${SCRIPT_DIR}"/helm/app/charts/*/values.yaml; do
    awk -v where="${file#"${SCRIPT_DIR}/"}" '
      /^image:/ { block = 1; next }
      /^[^ #]/ { block = 0 }
      block && $1 == "repository:" { repository = $2 }
      block && $1 == "tag:" { tag = $2 }
      END {
        gsub(/"/, "", repository); gsub(/"/, "", tag)
        if (repository != "" && tag != "" && repository !~ /^localhost[:\/]/) print repository ":" tag "\t" where
      }' "$file"
  done
  # The Dockerfile's base images (`FROM image [AS stage]`; a FROM naming an
  # earlier stage pulls nothing).
  awk '
    toupper($1) == "FROM" {
      image = ""
      for (i = 2; i <= NF; i++) if ($i !~ /^--/) { image = $i; break }
      if (!(image in stages)) print image "\tDockerfile"
      if (toupper($(NF - 1)) == "AS") stages[$NF] = 1
    }' "${SCRIPT_DIR}/Dockerfile"
}

check_images() {
  if ! have_command "$DOCKER"; then
    failed "images not checked" "the pinned images: not checked (docker is missing)" "install Docker, then run this again"
    return 0
  fi
  local image file error hint
  while IFS=$'\t' read -r image file; do
    if error="$("$DOCKER" manifest inspect "$image" 2>&1 >/dev/null)"; then
      passed "${image} (${file})"
    else
      hint="check the tag against the source named in the comment next to it in ${file%% *}; if it is right, check the network, or 'docker login' (Docker Hub limits anonymous pulls)"
      if [[ "$file" == *"(hub)"* ]]; then
        hint+="; Istio's own registry holds the same images (registry.istio.io/release, its default hub since istio/istio#59364): set hub: to it in istio-add-ons/istio-operator.yaml"
      fi
      failed "image ${image}" "${image} (${file}) does not resolve: ${error%%$'\n'*}" "$hint"
    fi
  done < <(pinned_images | awk -F '\t' '!seen[$1]++')
}

# check_chart NAME REPO VERSION
check_chart() {
  local name=$1 repo=$2 version=$3 error
  if error="$("$HELM" show chart "$name" --repo "$repo" --version "$version" 2>&1 >/dev/null)"; then
    passed "chart ${name} ${version} (${repo})"
  else
    failed "chart ${name} ${version}" "chart ${name} ${version} (${repo}, create-cluster.sh) does not resolve: ${error%%$'\n'*}" \
      "check the version against the source named in create-cluster.sh ('${HELM} search repo' after 'helm repo add'), or the network"
  fi
}

check_pins() {
  if [[ -n "$SKIP_PINS" ]]; then
    log "Pinned images and charts: not checked (--skip-pins)"
    return 0
  fi
  log "Pinned images resolve (${DOCKER} manifest inspect)"
  check_images
  log "Pinned charts and release files resolve"
  if have_command "$HELM"; then
    check_chart loki "$LOKI_CHART_REPO" "$LOKI_CHART_VERSION"
    check_chart alloy "$ALLOY_CHART_REPO" "$ALLOY_CHART_VERSION"
  else
    failed "charts not checked" "the Loki and Alloy charts: not checked (helm is missing)" "install helm, then run this again"
  fi
  check_url "$GATEWAY_API_CRDS" "Gateway API ${GATEWAY_API_VERSION}" "Gateway API ${GATEWAY_API_VERSION} CRDs" \
    "check GATEWAY_API_VERSION against https://github.com/kubernetes-sigs/gateway-api/releases, or the network"
  local file
  for file in $ISTIO_DASHBOARDS; do
    check_url "${ISTIO_DASHBOARDS_URL}/${file}" "Istio dashboard ${file}" "Istio ${ISTIO_VERSION} dashboard ${file}" \
      "check ISTIO_VERSION against https://github.com/istio/istio/tags and the file names in manifests/addons/dashboards/ there, or the network"
  done
}

summary() {
  log "Summary"
  local note=""
  [[ -z "$SKIP_PINS" ]] || note=" (pinned images and charts not checked: --skip-pins)"
  if [[ -n "$FAILED" ]]; then
    info "${PASSED} passed, ${WARNED} warning(s), failed: ${FAILED}${note}"
    info "Fix what is marked FAIL above (each has a hint), then run make preflight again."
    return 1
  fi
  info "All ${PASSED} checks passed, ${WARNED} warning(s)${note}: ready for make up."
}

preflight_main() {
  local arg
  for arg in "$@"; do
    case $arg in
      --skip-pins) SKIP_PINS=1 ;;
      -h | --help)
        sed -n '2,27p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        return 0
        ;;
      *)
        printf 'preflight: unknown argument %s (try --help)\n' "$arg" >&2
        return 2
        ;;
    esac
  done
  check_docker
  check_tools
  check_ports
  check_pins
  summary
}

preflight_main "$@"
