import CoreMetrics
import Foundation
import NIOConcurrencyHelpers
import Prometheus
import WarrenCore
import WarrenManagement

/// Prometheus metrics with RabbitMQ's names (rabbitmq_prometheus) where one exists. Metrics are
/// swift-metrics counters and gauges made by a swift-prometheus factory on the node's own
/// registries (not the process-wide MetricsSystem, so several nodes can share a process in
/// tests). Each scrape takes a snapshot on the broker loop and brings the metrics up to it:
/// gauges are set, counters advance by what changed since the last scrape.
final class PrometheusExporter: Sendable {
    /// Node-wide series and the queue totals (no labels). `/metrics` is the two,
    /// `/metrics/per-object` the first and the per-queue series (`perQueueText`): one metric
    /// name never appears both with and without labels in one scrape.
    private let aggregated = PrometheusCollectorRegistry()
    private let totals = PrometheusCollectorRegistry()
    private let state: NIOLockedValueBox<State>

    struct State {
        var gauges: [String: CoreMetrics.Gauge] = [:]
        var counters: [String: (counter: CoreMetrics.Counter, last: UInt64)] = [:]
    }

    init() {
        state = NIOLockedValueBox(State())
    }

    /// The text of one scrape.
    func scrape(_ s: MetricsSnapshot, node: NodeStatus, cluster: String, perObjectSeries: Bool) -> String {
        state.withLockedValue { st in
            let f = PrometheusMetricsFactory(registry: aggregated)
            func gauge(_ name: String, _ value: Double, _ dims: [(String, String)] = [], factory: PrometheusMetricsFactory? = nil) {
                let key = name + dims.map { "|\($0.0)=\($0.1)" }.joined()
                let g = st.gauges[key] ?? CoreMetrics.Gauge(label: name, dimensions: dims, factory: factory ?? f)
                st.gauges[key] = g
                g.record(value)
            }
            func counter(_ name: String, _ value: UInt64, _ dims: [(String, String)] = [], factory: PrometheusMetricsFactory? = nil) {
                let key = name + dims.map { "|\($0.0)=\($0.1)" }.joined()
                var entry = st.counters[key] ?? (CoreMetrics.Counter(label: name, dimensions: dims, factory: factory ?? f), 0)
                if value < entry.last {
                    // The object was deleted and made again: a new series from zero.
                    entry.counter.destroy()
                    entry = (CoreMetrics.Counter(label: name, dimensions: dims, factory: factory ?? f), 0)
                }
                if value > entry.last { entry.counter.increment(by: Int64(value - entry.last)) }
                entry.last = value
                st.counters[key] = entry
            }
            gauge("rabbitmq_identity_info", 1, [("rabbitmq_node", node.name), ("rabbitmq_cluster", cluster)])
            gauge("rabbitmq_connections", Double(s.connections))
            gauge("rabbitmq_channels", Double(s.channels))
            gauge("rabbitmq_consumers", Double(s.consumers))
            gauge("rabbitmq_queues", Double(s.queues))
            let tf = PrometheusMetricsFactory(registry: totals)
            gauge("rabbitmq_queue_messages_ready", Double(s.ready), factory: tf)
            gauge("rabbitmq_queue_messages_unacked", Double(s.unacked), factory: tf)
            gauge("rabbitmq_queue_messages", Double(s.ready + s.unacked), factory: tf)
            let g = s.stats
            counter("rabbitmq_global_messages_received_total", g.received)
            counter("rabbitmq_global_messages_received_confirm_total", g.receivedConfirm)
            counter("rabbitmq_global_messages_routed_total", g.routed)
            counter("rabbitmq_global_messages_unroutable_returned_total", g.unroutableReturned)
            counter("rabbitmq_global_messages_unroutable_dropped_total", g.unroutableDropped)
            counter("rabbitmq_global_messages_confirmed_total", g.confirmed)
            counter("rabbitmq_global_messages_delivered_total", g.deliverGet)
            counter("rabbitmq_global_messages_delivered_consume_manual_ack_total", g.deliveredManualAck)
            counter("rabbitmq_global_messages_delivered_consume_auto_ack_total", g.deliveredAutoAck)
            counter("rabbitmq_global_messages_delivered_get_manual_ack_total", g.getManualAck)
            counter("rabbitmq_global_messages_delivered_get_auto_ack_total", g.getAutoAck)
            counter("rabbitmq_global_messages_get_empty_total", g.getEmpty)
            counter("rabbitmq_global_messages_redelivered_total", g.redelivered)
            counter("rabbitmq_global_messages_acknowledged_total", g.acknowledged)
            counter("rabbitmq_global_messages_dead_lettered_total", g.deadLettered)
            gauge("rabbitmq_process_resident_memory_bytes", Double(node.memoryUsed))
            gauge("rabbitmq_resident_memory_limit_bytes", Double(node.memoryLimit))
            gauge("rabbitmq_process_open_fds", Double(node.fdUsed))
            gauge("rabbitmq_process_max_fds", Double(node.fdTotal))
            gauge("rabbitmq_disk_space_available_bytes", Double(node.diskFree))
            gauge("rabbitmq_disk_space_available_limit_bytes", Double(node.diskFreeLimit))
            gauge("rabbitmq_alarms_memory_used_watermark", s.alarms.contains("memory") ? 1 : 0)
            gauge("rabbitmq_alarms_free_disk_space_watermark", s.alarms.contains("disk") ? 1 : 0)
            gauge("rabbitmq_alarms_file_descriptor_limit", 0)
            // Federation links this node runs, by state (every state present, 0 included, so
            // an alert on "error" > 0 has a series to watch).
            for state in ["starting", "running", "error"] {
                gauge("warren_federation_links", Double(s.federationLinks[state] ?? 0), [("state", state)])
            }
            guard perObjectSeries else { return aggregated.emitToString() + totals.emitToString() }
            return aggregated.emitToString() + Self.perQueueText(s.perQueue)
        }
    }

    /// The per-queue series, written straight as Prometheus text: the values are the queues'
    /// own counters and gauges, and with 100,000 queues a registry of 900,000 series took
    /// minutes of CPU a scrape. Deleted queues simply have no line.
    static func perQueueText(_ queues: [MetricsSnapshot.Queue]) -> String {
        typealias Q = MetricsSnapshot.Queue
        let series: [(String, String, (Q) -> UInt64)] = [
            ("rabbitmq_queue_messages_ready", "gauge", { UInt64($0.ready) }),
            ("rabbitmq_queue_messages_unacked", "gauge", { UInt64($0.unacked) }),
            ("rabbitmq_queue_messages", "gauge", { UInt64($0.ready + $0.unacked) }),
            ("rabbitmq_queue_messages_ready_bytes", "gauge", { UInt64($0.readyBytes) }),
            ("rabbitmq_queue_consumers", "gauge", { UInt64($0.consumers) }),
            ("rabbitmq_queue_messages_published_total", "counter", { $0.published }),
            ("rabbitmq_queue_messages_delivered_total", "counter", { $0.delivered }),
            ("rabbitmq_queue_messages_acknowledged_total", "counter", { $0.acknowledged }),
            ("rabbitmq_queue_messages_redelivered_total", "counter", { $0.redelivered }),
        ]
        let labels = queues.map { "{vhost=\"\(escape($0.vhost))\",queue=\"\(escape($0.name))\"} " }
        var out = ""
        out.reserveCapacity(queues.count * series.count * 80)
        for (name, type, value) in series {
            out += "# TYPE \(name) \(type)\n"
            for (i, q) in queues.enumerated() {
                out += name
                out += labels[i]
                out += String(value(q))
                out += "\n"
            }
        }
        return out
    }

    /// A label value in Prometheus' text format.
    static func escape(_ v: String) -> String {
        guard v.contains(where: { $0 == "\\" || $0 == "\"" || $0 == "\n" }) else { return v }
        return v.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}
