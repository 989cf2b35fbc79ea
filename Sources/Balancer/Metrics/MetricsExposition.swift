import BalancerCore
import Prometheus
import VRRPCore

/// The status model in Prometheus' text exposition format, rendered by swift-prometheus
/// into a registry made for the one scrape: nothing is counted on the data path, the numbers
/// are the ones `status` shows. Its own target so that the pure core needs no third-party
/// package; it is as pure (no I/O).
public enum MetricsExposition {
    /// The `/metrics` body.
    public static func render(_ report: StatusReport) -> [UInt8] {
        let registry = PrometheusCollectorRegistry()
        gauge(registry, "connections_active", "Connections (or UDP flows) open now.", report.connections)
        counter(registry, "connections_total", "Connections accepted since start.", report.totalConnections)
        counter(registry, "clients_refused_total", "Clients refused by client_acl.", report.refusedClients)
        gauge(registry, "uptime_seconds", "Seconds since penha started.", report.uptimeSeconds)
        for server in report.servers {
            let labels = [("server", "\(server.index)"), ("address", endpoint(server.address, server.port))]
            gauge(registry, "server_up", "1 if the server takes new clients (not blacklisted), else 0.",
                  server.state == .blacklisted ? 0 : 1, labels)
            gauge(registry, "server_connections_active", "Connections to the server open now.", server.connections, labels)
            counter(registry, "server_connections_total", "Connections made to the server.", server.totalConnections, labels)
            counter(registry, "server_sent_bytes_total", "Bytes sent to the server.", server.sent, labels)
            counter(registry, "server_received_bytes_total", "Bytes received from the server.", server.received, labels)
        }
        if let tls = report.tlsHandshakes {
            counter(registry, "tls_handshakes_total", "TLS handshakes completed.", tls.completed)
            counter(registry, "tls_handshake_failures_total", "TLS handshakes that failed.", tls.failed)
        }
        if let draining = report.draining {
            gauge(registry, "draining_connections", "While penha stops: connections it still relays (drain).", draining.connections)
            gauge(registry, "drain_seconds_left", "While penha stops: seconds until what is left is closed.", draining.secondsLeft)
        }
        for instance in report.vrrp {
            let labels = [("vrid", "\(instance.vrid)"), ("interface", instance.interface)]
            gauge(registry, "vrrp_master", "1 while this node is the instance's master, else 0.",
                  instance.state == .master ? 1 : 0, labels)
            // Every state has a series, named as `status` names it, so that a change shows as 0 -> 1.
            for state in VRRPState.allCases {
                gauge(registry, "vrrp_state", "1 for the instance's current state, 0 for the others.",
                      instance.state == state ? 1 : 0, labels + [("state", state.rawValue)])
            }
            gauge(registry, "vrrp_priority", "The priority adverts carry now (tracking included).",
                  instance.effectivePriority, labels)
            counter(registry, "vrrp_adverts_sent_total", "VRRP adverts sent.", instance.sent, labels)
            counter(registry, "vrrp_adverts_received_total", "VRRP adverts received and accepted.", instance.received, labels)
            for (reason, count) in instance.dropped.sorted(by: { $0.key.statusName < $1.key.statusName }) {
                counter(registry, "vrrp_drops_total", "Received adverts dropped, by reason (RFC 5798 7.1).",
                        count, labels + [("reason", reason.statusName)])
            }
            counter(registry, "vrrp_drops_total", "Received adverts dropped, by reason (RFC 5798 7.1).",
                    instance.malformed, labels + [("reason", "malformed")])
        }
        if let bgp = report.bgp { self.bgp(bgp, registry) }
        var body: [UInt8] = []
        registry.emit(into: &body)
        return body
    }


    /// `bgp`: whether the routes are in the daemon's table, and why, a series per reason as
    /// for vrrp's states.
    private static func bgp(_ bgp: StatusReport.BGP, _ registry: PrometheusCollectorRegistry) {
        let labels = [("table", "\(bgp.table)")]
        gauge(registry, "bgp_announced", "1 while the VIP routes are in the table the BGP daemon announces from, else 0.",
              bgp.announced ? 1 : 0, labels)
        for reason in BGPDecision.Reason.allCases {
            gauge(registry, "bgp_reason", "1 for why the VIPs are announced or withdrawn now, 0 for the other reasons.",
                  bgp.reason == reason ? 1 : 0, labels + [("reason", reason.rawValue)])
        }
        gauge(registry, "bgp_routes", "VIP routes in the table now.", bgp.routes.count, labels)
        gauge(registry, "bgp_route_error", "1 if the last route change failed (see status), else 0.", bgp.error == nil ? 0 : 1, labels)
        if let peers = bgp.secondChancePeers {
            gauge(registry, "bgp_second_chance_peers", "Peers the second chance passes strays on to (0: none known, no filter).",
                  peers, labels)
        }
    }

    private static func endpoint(_ address: String, _ port: Int) -> String {
        Endpoint.describe(host: address, port: port)
    }

    /// `penha_NAME`; NAME ends in its unit (`_bytes_total`, `_seconds`), as Prometheus' conventions ask.
    private static func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "penha", metricName: name, unitName: "", helpText: help)
    }

    private static func gauge(_ registry: PrometheusCollectorRegistry, _ name: String, _ help: String, _ value: Int,
                              _ labels: [(String, String)] = []) {
        registry.makeGauge(descriptor: descriptor(name, help), labels: labels).set(Int64(value))
    }

    /// A counter's value is the status model's: never more than Int64 can say.
    private static func counter(_ registry: PrometheusCollectorRegistry, _ name: String, _ help: String, _ value: UInt64,
                                _ labels: [(String, String)] = []) {
        registry.makeCounter(descriptor: descriptor(name, help), labels: labels).increment(by: Int64(clamping: value))
    }
}
