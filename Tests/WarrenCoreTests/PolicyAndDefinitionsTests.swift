import AMQPProtocol
import Foundation
import Testing

@testable import WarrenCore

/// The repository's Tests/fixtures folder.
let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("fixtures")

@Suite("Policies")
struct PolicyTests {
    @Test("a policy applies to matching queues at once; the lowest limit wins; operator policies cap")
    func apply() throws {
        let broker = Broker()
        let c = TestClient.ready(broker)
        c.declare("app.orders")
        c.declare("app.args", ["x-max-length": .int32(5)])
        for i in 0..<5 { c.publish(routingKey: "app.orders", body: "\(i)") }
        try broker.setPolicy(Policy(name: "limits", vhost: "/", pattern: "^app\\.", applyTo: .queues, definition: ["max-length": .int(2)]))
        let v = broker.vhosts["/"]!
        #expect(v.queues["app.orders"]!.messageCount == 2, "trimmed when the policy arrives")
        #expect(v.queues["app.orders"]!.settings.policyName == "limits")
        #expect(v.queues["app.args"]!.settings.maxLength == 2, "the lower of argument (5) and policy (2)")
        try broker.setPolicy(Policy(name: "cap", vhost: "/", pattern: ".*", applyTo: .queues, definition: ["max-length": .int(3)]), operator: true)
        #expect(v.queues["app.args"]!.settings.maxLength == 2)
        try broker.clearPolicy(vhost: "/", name: "limits")
        #expect(v.queues["app.orders"]!.settings.maxLength == 3, "the operator policy alone")
        #expect(v.queues["app.args"]!.settings.maxLength == 3, "the operator policy caps the argument")
    }

    @Test("the highest priority policy wins")
    func priority() throws {
        let broker = Broker()
        try broker.setPolicy(Policy(name: "low", vhost: "/", pattern: ".*", definition: ["message-ttl": .int(1)]))
        try broker.setPolicy(Policy(name: "high", vhost: "/", pattern: "^q", priority: 10, definition: ["message-ttl": .int(2)]))
        let c = TestClient.ready(broker)
        c.declare("q1")
        #expect(broker.vhosts["/"]!.queues["q1"]!.settings.messageTTL == 2)
    }

    @Test("apply-to: queues of any type, classic_queues and quorum_queues by type, exchanges")
    func applyToByQueueType() throws {
        let broker = Broker()
        for (name, applyTo) in [("any", Policy.ApplyTo.queues), ("classic", .classicQueues), ("quorum", .quorumQueues), ("x", .exchanges)] {
            try broker.setPolicy(Policy(name: name, vhost: "/", pattern: "^\(name)", applyTo: applyTo, definition: ["max-length": .int(7)]))
        }
        let c = TestClient.ready(broker)
        for name in ["any-c", "classic-c", "quorum-c", "x-c"] { c.declare(name, ["x-queue-type": .string("classic")]) }
        for name in ["any-q", "classic-q", "quorum-q"] {
            c.send(channel: 1, .queueDeclare(QueueDeclare(queue: name, durable: true, arguments: ["x-queue-type": .string("quorum")])))
            _ = c.methods(channel: 1)
        }
        let policy = { (name: String) in broker.vhosts["/"]!.queues[name]?.settings.policyName }
        #expect(policy("any-c") == "any" && policy("any-q") == "any")
        #expect(policy("classic-c") == "classic" && policy("classic-q") == nil)
        #expect(policy("quorum-q") == "quorum" && policy("quorum-c") == nil)
        #expect(policy("x-c") == nil)
    }

    @Test("alternate-exchange by policy")
    func alternateByPolicy() throws {
        let broker = Broker()
        let c = TestClient.ready(broker)
        c.send(channel: 1, .exchangeDeclare(ExchangeDeclare(exchange: "in", type: "direct")))
        c.send(channel: 1, .exchangeDeclare(ExchangeDeclare(exchange: "unrouted", type: "fanout")))
        c.declare("catch")
        c.send(channel: 1, .queueBind(QueueBind(queue: "catch", exchange: "unrouted")))
        try broker.setPolicy(Policy(name: "ae", vhost: "/", pattern: "^in$", applyTo: .exchanges, definition: ["alternate-exchange": .string("unrouted")]))
        c.publish(exchange: "in", routingKey: "x", body: "caught")
        #expect(c.get("catch")?.text == "caught")
    }

    @Test("invalid definitions are refused with a reason", arguments: [
        (["message-ttl": JSONValue.int(-1)], "message-ttl must be a non-negative integer"),
        (["overflow": .string("explode")], "overflow must be one of drop-head, reject-publish, reject-publish-dlx"),
        (["colour": .string("blue")], "colour is not a recognised policy key"),
        (["ha-mode": .string("exactly")], "ha-mode exactly needs ha-params, a positive integer"),
        (["expires": .int(0)], "expires must be a positive integer"),
    ])
    func invalid(_ definition: [String: JSONValue], _ why: String) {
        let broker = Broker()
        #expect(throws: AdminError("policy 'p': \(why)")) {
            try broker.setPolicy(Policy(name: "p", vhost: "/", pattern: ".*", definition: definition))
        }
    }

    @Test("ha-* and federation keys are stored for the issues that act on them")
    func futureKeys() throws {
        let broker = Broker()
        try broker.setPolicy(
            Policy(name: "ha", vhost: "/", pattern: ".*", definition: ["ha-mode": .string("exactly"), "ha-params": .int(2), "federation-upstream-set": .string("all")]))
        let c = TestClient.ready(broker)
        c.declare("q")
        #expect(broker.vhosts["/"]!.queues["q"]!.settings.otherPolicyKeys["ha-mode"] == .string("exactly"))
        #expect(throws: AdminError.self) {
            try broker.setPolicy(Policy(name: "op", vhost: "/", pattern: ".*", definition: ["ha-mode": .string("all")]), operator: true)
        }
    }
}

@Suite("Definitions")
struct DefinitionsTests {
    @Test("RabbitMQ 3.10.8's export loads unchanged")
    func importRabbitMQ() throws {
        let broker = Broker()
        try broker.importDefinitions(file: fixtures.appendingPathComponent("rabbitmq-3.10.8-export.json").path)
        #expect(broker.users["app"]?.authenticate(password: "apppw") == true)
        #expect(broker.users["ops"]?.tags == ["administrator", "policymaker"])
        #expect(broker.users["ops"]?.limits == UserLimits(maxConnections: 10, maxChannels: 20))
        let prod = try #require(broker.vhosts["prod"])
        #expect(prod.limits == VirtualHostLimits(maxConnections: 100, maxQueues: 50))
        #expect(broker.permissions["prod"]?["app"] == Permission(configure: "^app\\.", write: "^app\\.|amq\\.default", read: "^app\\.|amq\\.topic"))
        #expect(broker.topicPermissions["prod"]?["app"]?["amq.topic"]?.write == "^app\\..*")
        #expect(broker.policies["prod"]?["app-limits"]?.definition["overflow"] == .string("reject-publish"))
        #expect(broker.operatorPolicies["prod"]?["cap"]?.definition["max-length-bytes"] == .int(10_485_760))
        #expect(broker.parameters["prod"]?["federation-upstream"]?["upstream-a"]?["uri"] == .string("amqp://remote-host"))
        #expect(broker.globalParameters["cluster_tags"]?["region"] == .string("eu"))
        let orders = try #require(prod.queues["app.orders"])
        #expect(orders.durable && orders.settings.maxPriority == 10 && orders.settings.maxLength == 1000)
        #expect(orders.settings.messageTTL == 60000 && orders.settings.maxLengthBytes == 10_485_760)
        #expect(prod.exchanges["app.in"]?.alternateExchange == "app.unrouted")
        #expect(prod.exchanges["app.match"]?.bindings.first?.arguments["pages"] == .int64(2))
        #expect(prod.queues["app.orders"]?.bindings.contains { $0.routingKey == "order.created" } == true)
    }

    @Test("an export imports into a fresh broker as the same definitions")
    func roundTrip() throws {
        let first = Broker()
        try first.importDefinitions(file: fixtures.appendingPathComponent("rabbitmq-3.10.8-export.json").path)
        let exported = first.exportDefinitions()
        let second = Broker()
        try second.importDefinitions(exported)
        #expect(second.exportDefinitions() == exported)
    }

    @Test("the export matches the committed fixture (what RabbitMQ is shown to accept)")
    func golden() throws {
        let broker = Broker()
        try broker.importDefinitions(file: fixtures.appendingPathComponent("rabbitmq-3.10.8-export.json").path)
        let path = fixtures.appendingPathComponent("warren-export.json").path
        let data = broker.exportDefinitionsJSON()
        if ProcessInfo.processInfo.environment["WARREN_UPDATE_FIXTURES"] == "1" {
            try data.write(to: URL(fileURLWithPath: path))
        }
        let committed = try #require(FileManager.default.contents(atPath: path), "run with WARREN_UPDATE_FIXTURES=1 to write \(path)")
        let a = JSONValue(foundation: try JSONSerialization.jsonObject(with: committed))
        let b = JSONValue(foundation: try JSONSerialization.jsonObject(with: data))
        #expect(a == b)
    }

    @Test("vhost limits set through the admin interface export as RabbitMQ's vhost-limits parameter")
    func vhostLimitsExport() throws {
        let broker = Broker()
        broker.addVirtualHost("v")
        try broker.setVirtualHostLimits("v", VirtualHostLimits(maxQueues: 7))
        #expect(broker.parameters["v"]?["vhost-limits"]?["limits"] == .object(["max-queues": .int(7)]))
        let second = Broker()
        try second.importDefinitions(broker.exportDefinitions())
        #expect(second.vhosts["v"]?.limits == VirtualHostLimits(maxQueues: 7))
        try broker.setVirtualHostLimits("v", VirtualHostLimits())
        #expect(broker.parameters["v"]?["vhost-limits"]?["limits"] == nil)
    }

    @Test("bad definitions are refused with a message that names the entry")
    func errors() {
        let broker = Broker()
        #expect(throws: AdminError("definitions: queue 'q' names an unknown vhost")) {
            try broker.importDefinitions(.object(["queues": .array([.object(["name": .string("q"), "vhost": .string("nope")])])]))
        }
        #expect(throws: AdminError("definitions: not valid JSON")) {
            try broker.importDefinitions(json: Data("{".utf8))
        }
    }
}
