import AMQPProtocol
import Foundation
import Testing

@testable import WarrenCore

/// A clock tests move by hand.
final class ManualClock: BrokerClock, @unchecked Sendable {
    var now: Int64 = 1_700_000_000_000
    func nowMilliseconds() -> Int64 { now }
}

@Suite("Passwords")
struct PasswordTests {
    @Test("hashes RabbitMQ wrote verify, for each algorithm it has")
    func rabbitHashes() throws {
        // sha256 from RabbitMQ 3.10.8's export (user alice, password alicepw); sha512 and md5 in
        // RabbitMQ's layout, made with Python's hashlib (salt 01020304, password "secret").
        let sha256 = try #require(PasswordHash(base64: "VRa0viRBRBGiFoXNyRVpR1kIKtp6VikEet/1Y0S9pD63vVqY", algorithm: "rabbit_password_hashing_sha256"))
        #expect(sha256.matches("alicepw"))
        #expect(!sha256.matches("alicepw2"))
        let sha512 = try #require(PasswordHash(base64: "AQIDBPhTH2L5HGYB1LWOrn+YpvuQmVOXKGqgsuiJRIZTILRoEvblSJo/WAsym3IZTfuaIaK5KR2o5KwFfTv6KsxfMIE=", algorithm: "rabbit_password_hashing_sha512"))
        #expect(sha512.matches("secret"))
        let md5 = try #require(PasswordHash(base64: "AQIDBDgk9ci8Lfh6CKE9Y0AUfmU=", algorithm: "rabbit_password_hashing_md5"))
        #expect(md5.matches("secret"))
        #expect(PasswordHash(base64: "AQID", algorithm: "rabbit_password_hashing_sha256") == nil)
        #expect(PasswordHash(base64: "AQIDBA==", algorithm: "rabbit_password_hashing_bcrypt") == nil)
    }

    @Test("new hashes are salted SHA-256 and round-trip through base64")
    func newHashes() throws {
        let a = PasswordHash.make(password: "pw")
        let b = PasswordHash.make(password: "pw")
        #expect(a.algorithm == .sha256 && a.bytes.count == 36)
        #expect(a.bytes != b.bytes, "a fresh salt each time")
        let parsed = try #require(PasswordHash(base64: a.base64, algorithm: a.algorithm.rawValue))
        #expect(parsed.matches("pw"))
    }
}

/// A broker with vhost v1, users alice (limited), bob (topic permissions, limits) and guest.
func accessBroker(clock: ManualClock = ManualClock()) -> Broker {
    let broker = Broker(clock: clock)
    broker.addVirtualHost("v1")
    broker.putUser(User(name: "alice", password: "alicepw"))
    broker.setPermissions(user: "alice", vhost: "v1", Permission(configure: "^alice-.*", write: "^alice-.*|amq\\.default", read: "^alice-.*|amq\\.direct"))
    broker.putUser(User(name: "bob", password: "bobpw", tags: ["monitoring"], limits: UserLimits(maxConnections: 2, maxChannels: 2)))
    broker.setPermissions(user: "bob", vhost: "/", .all)
    try! broker.setTopicPermissions(user: "bob", vhost: "/", TopicPermission(exchange: "amq.topic", write: "^allowed\\..*", read: "^readable\\..*"))
    return broker
}

@Suite("Access control")
struct AccessControlTests {
    func client(_ broker: Broker, _ user: String, _ password: String, _ vhost: String) -> TestClient {
        let c = TestClient(broker)
        c.handshake(user: user, password: password, vhost: vhost)
        c.openChannel()
        return c
    }

    func denial(_ c: TestClient, _ method: AMQPMethod) -> String? {
        c.send(channel: 1, method)
        let last = c.methods(channel: 1).last
        if case .channelClose = last { c.send(channel: 1, .channelCloseOk(ChannelCloseOk())); c.openChannel() }
        return last?.closeText
    }

    @Test("each method is checked where RabbitMQ checks it, with its texts")
    func perMethod() {
        let broker = accessBroker()
        let c = client(broker, "alice", "alicepw", "v1")
        let refused = { (kind: String, name: String) in "ACCESS_REFUSED - access to \(kind) '\(name)' in vhost 'v1' refused for user 'alice'" }
        #expect(denial(c, .queueDeclare(QueueDeclare(queue: "other"))) == refused("queue", "other"))
        #expect(denial(c, .exchangeDeclare(ExchangeDeclare(exchange: "other-x"))) == refused("exchange", "other-x"))
        #expect(denial(c, .queueDeclare(QueueDeclare(queue: "alice-dl", arguments: ["x-dead-letter-exchange": "amq.fanout"]))) == refused("exchange", "amq.fanout"))
        #expect(denial(c, .exchangeDeclare(ExchangeDeclare(exchange: "alice-ae", arguments: ["alternate-exchange": "amq.fanout"]))) == refused("exchange", "amq.fanout"))
        #expect(denial(c, .exchangeDelete(ExchangeDelete(exchange: "amq.fanout"))) == "ACCESS_REFUSED - deletion of system exchange 'amq.fanout' in vhost 'v1' not allowed")
        #expect(denial(c, .queueBind(QueueBind(queue: "alice-q", exchange: "amq.fanout"))) == refused("exchange", "amq.fanout"))
        #expect(denial(c, .basicConsume(BasicConsume(queue: "other"))) == refused("queue", "other"))
        #expect(denial(c, .basicGet(BasicGet(queue: "other"))) == refused("queue", "other"))
        #expect(denial(c, .queuePurge(QueuePurge(queue: "other"))) == refused("queue", "other"))
        #expect(denial(c, .queueDelete(QueueDelete(queue: "other"))) == refused("queue", "other"))
        #expect(denial(c, .exchangeBind(ExchangeBind(destination: "alice-x", source: "amq.fanout"))) == refused("exchange", "amq.fanout"))
        // Allowed: own names, amq.direct for reading, the default exchange for writing.
        #expect(denial(c, .queueDeclare(QueueDeclare(queue: "alice-q"))) == nil)
        #expect(denial(c, .queueBind(QueueBind(queue: "alice-q", exchange: "amq.direct", routingKey: "k"))) == nil)
        // A publish to an exchange without write permission: 403 before even looking it up.
        c.publish(exchange: "nope-x", routingKey: "k", body: "x")
        #expect(c.methods(channel: 1).last?.closeText == refused("exchange", "nope-x"))
        c.send(channel: 1, .channelCloseOk(ChannelCloseOk()))
        c.openChannel()
        c.publish(routingKey: "alice-q", body: "to the default exchange (amq.default)")
        #expect(broker.vhosts["v1"]!.queues["alice-q"]!.messageCount == 1)
    }

    @Test("topic permissions on publish and bind")
    func topics() {
        let broker = accessBroker()
        let c = client(broker, "bob", "bobpw", "/")
        c.publish(exchange: "amq.topic", routingKey: "denied.key", body: "x")
        #expect(c.methods(channel: 1).last?.closeText == "ACCESS_REFUSED - access to topic 'denied.key' in exchange 'amq.topic' in vhost '/' refused for user 'bob'")
        c.send(channel: 1, .channelCloseOk(ChannelCloseOk()))
        c.openChannel()
        c.publish(exchange: "amq.topic", routingKey: "allowed.key", body: "x")
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "bq", exclusive: true)))
        #expect(denial(c, .queueBind(QueueBind(queue: "bq", exchange: "amq.topic", routingKey: "denied.#")))
            == "ACCESS_REFUSED - access to topic 'denied.#' in exchange 'amq.topic' in vhost '/' refused for user 'bob'")
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "bq", exclusive: true)))
        #expect(denial(c, .queueBind(QueueBind(queue: "bq", exchange: "amq.topic", routingKey: "readable.#"))) == nil)
    }

    @Test("vhost access, and vhost and user connection limits, at connection.open")
    func connectionLimits() throws {
        let broker = accessBroker()
        try broker.setVirtualHostLimits("v1", VirtualHostLimits(maxConnections: 1))
        #expect(TestClient(broker).handshake(user: "alice", password: "alicepw", vhost: "/").last?.closeText
            == "NOT_ALLOWED - access to vhost '/' refused for user 'alice'")
        _ = client(broker, "alice", "alicepw", "v1")
        #expect(TestClient(broker).handshake(user: "alice", password: "alicepw", vhost: "v1").last?.closeText
            == "NOT_ALLOWED - access to vhost 'v1' refused for user 'alice': connection limit (1) is reached")
        _ = client(broker, "bob", "bobpw", "/")
        let second = TestClient(broker)
        second.handshake(user: "bob", password: "bobpw")
        #expect(TestClient(broker).handshake(user: "bob", password: "bobpw").last?.closeText
            == "NOT_ALLOWED - connection refused for user 'bob': user connection limit (2) is reached")
    }

    @Test("the user channel limit and the vhost queue limit")
    func channelAndQueueLimits() throws {
        let broker = accessBroker()
        let c = client(broker, "bob", "bobpw", "/")
        c.openChannel(2)
        c.send(channel: 3, .channelOpen(ChannelOpen()))
        #expect(c.methods(channel: 0).last?.closeText
            == "NOT_ALLOWED - number of channels opened for user 'bob' has reached the maximum allowed user limit of (2)")
        try broker.setVirtualHostLimits("v1", VirtualHostLimits(maxQueues: 1))
        let a = client(broker, "alice", "alicepw", "v1")
        a.send(channel: 1, .queueDeclare(QueueDeclare(queue: "alice-1")))
        #expect(denial(a, .queueDeclare(QueueDeclare(queue: "alice-2")))
            == "PRECONDITION_FAILED - cannot declare queue 'alice-2': queue limit in vhost 'v1' (1) is reached")
    }

    @Test("user-id must be the user's own unless it has the impersonator tag")
    func userID() {
        let broker = accessBroker()
        let c = client(broker, "guest", "guest", "/")
        c.publish(routingKey: "nowhere", body: "x", properties: BasicProperties(userID: "bob"))
        #expect(c.methods(channel: 1).last?.closeText == "PRECONDITION_FAILED - user_id property set to 'bob' but authenticated user was 'guest'")
        c.send(channel: 1, .channelCloseOk(ChannelCloseOk()))
        c.openChannel()
        c.publish(routingKey: "nowhere", body: "x", properties: BasicProperties(userID: "guest"))
        #expect(c.methods(channel: 1).isEmpty)
    }

    @Test("deleting a vhost closes its connections and removes its objects")
    func deleteVhost() throws {
        let broker = accessBroker()
        let c = client(broker, "alice", "alicepw", "v1")
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "alice-q")))
        try broker.deleteVirtualHost("v1")
        #expect(c.methods(channel: 0).last?.closeCode == 320)
        #expect(broker.vhosts["v1"] == nil)
        #expect(!broker.canAccess(vhost: "v1", user: "alice"))
    }

    @Test("deleting a vhost under consumers with unacked messages, then the client answering")
    func deleteVirtualHostWithUnacked() throws {
        let broker = accessBroker()
        broker.setPermissions(user: "guest", vhost: "v1", .all)
        let c = client(broker, "guest", "guest", "v1")
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "q")))
        c.send(channel: 1, .queueDeclare(QueueDeclare(queue: "ex", exclusive: true)))
        c.send(channel: 1, .basicConsume(BasicConsume(queue: "q", consumerTag: "t")))
        for i in 0..<3 { c.publish(routingKey: "q", body: "\(i)") }
        try broker.deleteVirtualHost("v1")
        #expect(c.methods(channel: 0).last?.closeCode == 320)
        // The client, not yet aware, keeps talking; then answers. Nothing touches the old vhost.
        c.send(channel: 1, .basicAck(BasicAck(deliveryTag: 1)))
        c.publish(routingKey: "q", body: "late")
        c.send(channel: 0, .connectionCloseOk(ConnectionCloseOk()))
        #expect(broker.connections.isEmpty)
        broker.addVirtualHost("v1")
        #expect(broker.vhosts["v1"]!.queues.isEmpty)
    }

    @Test("the expiration property is checked as RabbitMQ checks it", arguments: [
        ("abc", "no_integer"), ("-1", "{value_negative,-1}"), ("1.5", "{leftover_string,\".5\"}"), ("", "no_integer"),
    ])
    func expiration(_ value: String, _ why: String) {
        let c = TestClient.ready(Broker())
        c.publish(routingKey: "nowhere", body: "x", properties: BasicProperties(expiration: value))
        #expect(c.methods(channel: 1).last?.closeText == "PRECONDITION_FAILED - invalid expiration '\(value)': \(why)")
    }
}
