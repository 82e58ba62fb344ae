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
    /// Node-wide series; the queue totals (no labels); the per-queue series. `/metrics` is the
    /// first two, `/metrics/per-object` the first and the last (one metric name never appears
    /// both with and without labels in one scrape).
    private let aggregated = PrometheusCollectorRegistry()
    private let totals = PrometheusCollectorRegistry()
    private let perObject = PrometheusCollectorRegistry()
    private let state: NIOLockedValueBox<State>

    struct State {
        var gauges: [String: CoreMetrics.Gauge] = [:]
        var counters: [String: (counter: CoreMetrics.Counter, last: UInt64)] = [:]
        var queueSeries: Set<String> = []
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
            guard perObjectSeries else { return aggregated.emitToString() + totals.emitToString() }

            let pf = PrometheusMetricsFactory(registry: perObject)
            var live: Set<String> = []
            for q in s.perQueue {
                let dims = [("vhost", q.vhost), ("queue", q.name)]
                live.insert(q.vhost + "\u{0}" + q.name)
                gauge("rabbitmq_queue_messages_ready", Double(q.ready), dims, factory: pf)
                gauge("rabbitmq_queue_messages_unacked", Double(q.unacked), dims, factory: pf)
                gauge("rabbitmq_queue_messages", Double(q.ready + q.unacked), dims, factory: pf)
                gauge("rabbitmq_queue_messages_ready_bytes", Double(q.readyBytes), dims, factory: pf)
                gauge("rabbitmq_queue_consumers", Double(q.consumers), dims, factory: pf)
                counter("rabbitmq_queue_messages_published_total", q.published, dims, factory: pf)
                counter("rabbitmq_queue_messages_delivered_total", q.delivered, dims, factory: pf)
                counter("rabbitmq_queue_messages_acknowledged_total", q.acknowledged, dims, factory: pf)
                counter("rabbitmq_queue_messages_redelivered_total", q.redelivered, dims, factory: pf)
            }
            // Series of deleted queues go.
            for gone in st.queueSeries.subtracting(live) {
                let parts = gone.split(separator: "\u{0}", omittingEmptySubsequences: false)
                let suffix = "|vhost=\(parts[0])|queue=\(parts[1])"
                for k in st.gauges.keys where k.hasSuffix(suffix) { st.gauges.removeValue(forKey: k)?.destroy() }
                for k in st.counters.keys where k.hasSuffix(suffix) { st.counters.removeValue(forKey: k)?.counter.destroy() }
            }
            st.queueSeries = live
            return aggregated.emitToString() + perObject.emitToString()
        }
    }
}
