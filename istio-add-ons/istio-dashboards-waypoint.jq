# Makes Istio's Service and Workload dashboards (istio-service-dashboard.json,
# istio-workload-dashboard.json, as published at ISTIO_VERSION) show ambient
# mode's HTTP metrics; create-cluster.sh runs it on both files after the
# download:  jq -f istio-add-ons/istio-dashboards-waypoint.jq FILE
#
# Upstream, their HTTP panels read what a sidecar or gateway reports: the
# Reporter variable offers `source` and `destination`, and the "Server",
# "Service Workloads" and "Outbound Services" panels fix reporter="destination"
# or reporter="source". In ambient mode the HTTP metrics (istio_requests_total,
# istio_request_duration_*, istio_request_bytes_*, istio_response_bytes_*)
# come from the waypoint, reporter="waypoint", and ztunnel reports TCP only
# (under `source` and `destination`). So, in both mesh modes (sidecar mode has
# no waypoint series, and ambient mode no sidecar ones, so no request counts
# twice; Istio's own mesh dashboard reads reporter=~"source|waypoint" the same
# way):
#   - every fixed reporter on an HTTP metric also takes the waypoint's:
#     reporter="destination" -> reporter=~"destination|waypoint", and
#     reporter="source" -> reporter=~"source|waypoint" (the waypoint reports
#     the caller as source_workload too); TCP metrics keep theirs;
#   - the Reporter variable offers `waypoint` as well, and starts on
#     `destination` and `waypoint` (upstream: `destination`).
def http_metric: "istio_(requests_total|request_duration_[a-z]+_bucket|request_bytes_bucket|response_bytes_bucket)";

def with_waypoint:
  gsub("(?<selector>" + http_metric + "\\{[^}]*)reporter=\"(?<reporter>source|destination)\"";
       "\(.selector)reporter=~\"\(.reporter)|waypoint\"");

if any(.templating.list[]; .name == "qrep") then . else
  error("no Reporter variable (qrep): the dashboard changed upstream; update this patch") end
| walk(if type == "string" then with_waypoint else . end)
| .templating.list |= map(
    if .name == "qrep" then
      .query = "source,destination,waypoint"
      | .multi = true
      | .options = ["source", "destination", "waypoint"
                    | {text: ., value: ., selected: (. != "source")}]
      | .current = {text: ["destination", "waypoint"], value: ["destination", "waypoint"], selected: true}
    else . end)
