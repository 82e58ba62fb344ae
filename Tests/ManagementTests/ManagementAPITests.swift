import AMQPProtocol
import Foundation
import NIOCore
import Testing
import WarrenCore
import WarrenManagement

/// The API core without sockets: requests in, responses out, on a broker built in the test.
struct ManagementAPITests {
    let broker = Broker()
    let api: ManagementAPI
    let node = NodeStatus(name: "warren@test")

    init() {
        api = ManagementAPI(broker: broker, nodeName: "warren@test")
        broker.putUser(User(name: "mon", password: "pw", tags: ["monitoring"]))
        broker.putUser(User(name: "nobody", password: "pw"))
    }

    func call(_ method: String, _ path: String, _ body: String? = nil, user: String = "guest", password: String = "guest",
              query: [String: String] = [:]) -> (Int, JSONValue?) {
        let auth = "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
        let r = api.handle(
            ManagementRequest(method: method, path: path, query: query, authorization: auth, body: Array((body ?? "").utf8)), node: node)
        let json = r.body.isEmpty ? nil : (try? JSONSerialization.jsonObject(with: Data(r.body), options: [.fragmentsAllowed])).map { JSONValue(foundation: $0) }
        return (r.status, json)
    }

    @Test func vhostSlashIsOneEncodedSegment() {
        #expect(call("PUT", "/api/queues/%2F/a%2Fb", #"{"durable":false}"#).0 == 201)
        #expect(broker.vhosts["/"]?.queues["a/b"] != nil)
        let (status, q) = call("GET", "/api/queues/%2F/a%2Fb")
        #expect(status == 200 && q?["name"]?.stringValue == "a/b" && q?["vhost"]?.stringValue == "/")
        #expect(call("PUT", "/api/queues/%2F/a%2Fb", #"{"durable":false}"#).0 == 204)
    }

    @Test func authenticationAndTags() {
        let noAuth = api.handle(ManagementRequest(method: "GET", path: "/api/overview"), node: node)
        #expect(noAuth.status == 401 && noAuth.headers.contains { $0.0 == "WWW-Authenticate" })
        #expect(call("GET", "/api/overview", password: "bad").0 == 401)
        #expect(call("GET", "/api/overview", user: "nobody", password: "pw").1?["reason"]?.stringValue == "Not management user")
        #expect(call("GET", "/api/users", user: "mon", password: "pw").0 == 403)
        #expect(call("GET", "/api/nodes", user: "mon", password: "pw").0 == 200)
        // A monitor sees every vhost's queues but may not declare in one it has no permissions in.
        #expect(call("PUT", "/api/queues/%2F/x", "{}", user: "mon", password: "pw").1?["reason"]?.stringValue
            == "User not authorised to access virtual host")
    }

    @Test func healthcheckNode() {
        #expect(call("GET", "/api/healthchecks/node").1 == .object(["status": .string("ok")]))
        #expect(call("GET", "/api/healthchecks/node/warren@test").1 == .object(["status": .string("ok")]))
        #expect(call("GET", "/api/healthchecks/node/other@host").0 == 404)
    }

    @Test func bulkDeleteStopsAtTheFirstUnknownUser() {
        for u in ["b1", "b2", "b3"] { broker.putUser(User(name: u, password: "x")) }
        #expect(call("POST", "/api/users/bulk-delete", #"{"users":["b1","b2"]}"#).0 == 204)
        #expect(broker.users["b1"] == nil && broker.users["b2"] == nil)
        let (status, body) = call("POST", "/api/users/bulk-delete", #"{"users":["nosuch","b3"]}"#)
        #expect(status == 400 && body?["reason"] == .array([.string("no_such_user"), .string("nosuch")]))
        #expect(broker.users["b3"] != nil)
        #expect(call("POST", "/api/users/bulk-delete", #"{"nousers":1}"#).1?["reason"]?.stringValue == "[{key_missing,users}]")
    }

    /// Listings and imports larger than a slice are built over several turns of the loop and
    /// come out whole and in order.
    @Test func slicedListingAndImport() {
        api.sliceTime = .zero  // every slice ends after its first unit
        let n = ManagementAPI.sliceUnitForTests * 40 + 17
        let queues = (0..<n).map { #"{"name":"q\#($0)","vhost":"/","durable":true,"auto_delete":false,"arguments":{}}"# }
        let bindings = (0..<n).map { #"{"source":"amq.topic","vhost":"/","destination":"q\#($0)","destination_type":"queue","routing_key":"k\#($0)","arguments":{}}"# }
        let doc = #"{"queues":[\#(queues.joined(separator: ","))],"bindings":[\#(bindings.joined(separator: ","))]}"#
        let auth = "Basic " + Data("guest:guest".utf8).base64EncodedString()
        var r = api.respond(ManagementRequest(method: "POST", path: "/api/definitions", authorization: auth, body: Array(doc.utf8)), node: node)
        var turns = 1
        while let id = r.continuation {
            r = api.resume(id)
            turns += 1
        }
        #expect(r.status == 204)
        #expect(turns >= 4)
        #expect(broker.vhosts["/"]!.queues.count == n)
        let (status, list) = call("GET", "/api/queues/%2F", query: ["columns": "name"])
        let names = list?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        #expect(status == 200 && names.count == n && names == names.sorted())
        let bound = call("GET", "/api/bindings/%2F").1?.arrayValue ?? []
        #expect(bound.count == 2 * n)
        // The default exchange's implicit bindings come first, as in RabbitMQ.
        #expect(bound.prefix(n).allSatisfy { $0["source"]?.stringValue == "" })
    }

    @Test func guestOnlyFromLoopback() {
        let auth = "Basic " + Data("guest:guest".utf8).base64EncodedString()
        let r = api.handle(ManagementRequest(method: "GET", path: "/api/overview", authorization: auth, peerIsLoopback: false), node: node)
        #expect(r.status == 401 && r.text.contains("User can only log in via localhost"))
    }

    @Test func publishGetAndAckModes() {
        _ = call("PUT", "/api/queues/%2F/q", "{}")
        for i in 0..<3 {
            let (s, r) = call("POST", "/api/exchanges/%2F/amq.default/publish",
                              #"{"properties":{"priority":1},"routing_key":"q","payload":"bTA=","payload_encoding":"base64"}"#.replacingOccurrences(of: "bTA=", with: Data("m\(i)".utf8).base64EncodedString()))
            #expect(s == 200 && r?["routed"]?.boolValue == true)
        }
        let q = broker.vhosts["/"]!.queues["q"]!
        var (s, got) = call("POST", "/api/queues/%2F/q/get", #"{"count":2,"ackmode":"ack_requeue_true","encoding":"auto"}"#)
        #expect(s == 200 && got?.arrayValue?.map { $0["payload"]?.stringValue } == ["m0", "m1"])
        #expect(got?.arrayValue?.first?["message_count"]?.intValue == 2)
        #expect(q.messageCount == 3 && q.unackedCount == 0)
        (s, got) = call("POST", "/api/queues/%2F/q/get", #"{"count":5,"ackmode":"ack_requeue_false","encoding":"base64"}"#)
        #expect(got?.arrayValue?.count == 3 && got?.arrayValue?.first?["payload_encoding"]?.stringValue == "base64")
        #expect(got?.arrayValue?.first?["redelivered"]?.boolValue == true)
        #expect(q.messageCount == 0 && q.unackedCount == 0 && q.ackedCount == 3)
        #expect(call("POST", "/api/queues/%2F/q/get", #"{"count":1,"ackmode":"bogus"}"#).0 == 400)
    }

    @Test func columnsSortAndPagination() {
        for name in ["c", "a", "b"] { _ = call("PUT", "/api/queues/%2F/\(name)", "{}") }
        let (_, cols) = call("GET", "/api/queues", query: ["columns": "name,message_stats.publish", "sort": "name", "sort_reverse": "true"])
        #expect(cols?.arrayValue?.map { $0["name"]?.stringValue } == ["c", "b", "a"])
        #expect(cols?.arrayValue?.first?.objectValue?.keys.sorted() == ["message_stats", "name"])
        let (_, page) = call("GET", "/api/queues", query: ["page": "2", "page_size": "2", "sort": "name"])
        #expect(page?["page_count"]?.intValue == 2 && page?["items"]?.arrayValue?.map { $0["name"]?.stringValue } == ["c"])
        #expect(call("GET", "/api/queues", query: ["page": "9"]).0 == 400)
        let (_, filtered) = call("GET", "/api/queues", query: ["page": "1", "name": "^[ab]$", "use_regex": "true"])
        #expect(filtered?["filtered_count"]?.intValue == 2 && filtered?["total_count"]?.intValue == 3)
    }

    @Test func bindingsByPropertiesKey() {
        _ = call("PUT", "/api/exchanges/%2F/x", #"{"type":"topic"}"#)
        _ = call("PUT", "/api/queues/%2F/q", "{}")
        let post = api.handle(
            ManagementRequest(
                method: "POST", path: "/api/bindings/%2F/e/x/q/q", authorization: "Basic " + Data("guest:guest".utf8).base64EncodedString(),
                body: Array(#"{"routing_key":"a.#"}"#.utf8)), node: node)
        #expect(post.status == 201 && post.headers.contains { $0 == ("Location", "a.%23") })
        #expect(call("GET", "/api/bindings/%2F/e/x/q/q/a.%2523").0 == 200)
        #expect(call("DELETE", "/api/bindings/%2F/e/x/q/q/a.%2523").0 == 204)
        #expect(broker.vhosts["/"]!.exchanges["x"]!.bindings.isEmpty)
    }

    @Test func ratesComeFromSamples() {
        _ = call("PUT", "/api/queues/%2F/q", "{}")
        api.sampleRates(now: 0)
        for _ in 0..<50 {
            _ = call("POST", "/api/exchanges/%2F/amq.default/publish", #"{"properties":{},"routing_key":"q","payload":"x"}"#)
        }
        api.sampleRates(now: 5000)
        let (_, q) = call("GET", "/api/queues/%2F/q")
        #expect(q?["message_stats"]?["publish_details"]?["rate"] == .int(10))
        #expect(q?["messages_details"]?["rate"] == .int(10))
    }

    @Test func alarmsHealthCheck() {
        #expect(call("GET", "/api/health/checks/alarms").0 == 200)
        broker.setAlarm("memory", active: true)
        let (s, body) = call("GET", "/api/health/checks/local-alarms")
        #expect(s == 503 && body?["alarms"]?.arrayValue?.first?["resource"]?.stringValue == "memory")
    }

    @Test func jsonWriterEscapes() {
        let v = JSONValue.object(["k": .string("a\"b\\c\n\u{01}é"), "n": .double(.nan), "i": .int(-3)])
        #expect(JSONWriter.string(v) == #"{"i":-3,"k":"a\"b\\c\n\u0001é","n":0.0}"#)
    }
}

extension ManagementAPITests {
    @Test func defaultAndBuiltInExchangesAreProtected() {
        #expect(call("PUT", "/api/exchanges/%2F/amq.default", #"{"type":"direct"}"#).0 == 403)
        #expect(call("DELETE", "/api/exchanges/%2F/amq.default").0 == 403)
        #expect(call("DELETE", "/api/exchanges/%2F/amq.topic").0 == 403)
        #expect(call("PUT", "/api/exchanges/%2F/amq.mine", #"{"type":"direct"}"#).0 == 403)
        #expect(call("GET", "/api/exchanges/%2F/amq.default").1?["name"]?.stringValue == "")
    }
}
