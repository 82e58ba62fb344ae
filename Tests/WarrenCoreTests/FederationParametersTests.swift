import Foundation
import Testing

@testable import WarrenCore

/// Each case's text is what RabbitMQ 3.10.8 (Debian's, rabbitmq_federation on) printed after
/// "Validation failed" for `rabbitmqctl set_parameter` with the same value.
@Suite("Federation parameters: RabbitMQ's checks and texts")
struct FederationParametersTests {
    func check(_ component: String, _ name: String, _ json: String) -> String? {
        let value = JSONValue(foundation: try! JSONSerialization.jsonObject(with: Data(json.utf8), options: [.fragmentsAllowed]))
        do {
            try FederationParameters.validate(component: component, name: name, value: value)
            return nil
        } catch {
            return error.description
        }
    }

    @Test("refused upstreams, with RabbitMQ's text", arguments: [
        ("a", #"{}"#, #"Key "uri" not found in a"#),
        ("b", #"{"uri": 5}"#, "uri should be list, actually was 5"),
        ("c", #"{"uri": "http://x"}"#, #""http://x" not a valid URI: {{unexpected_uri_scheme,"http"},"http://x"}"#),
        ("d", #"{"uri": "amqp://x", "ack-mode": "sometimes"}"#,
         #"ack-mode should be one of [<<"no-ack">>,<<"on-publish">>,<<"on-confirm">>], actually was <<"sometimes">>"#),
        ("g", #"{"uri": "amqp://x", "bogus": 1}"#, #"Unrecognised terms [{<<"bogus">>,1}] in g"#),
        ("h", #"{"uri": ["amqp://x", "amqp://y"], "trust-user-id": "yes"}"#, #"trust-user-id should be boolean, actually was <<"yes">>"#),
        ("k", #"{"uri": "amqp://u:p@x", "reconnect-delay": "5"}"#, #"reconnect-delay should be a number, actually was <<"5">>"#),
    ])
    func refusedUpstreams(name: String, json: String, text: String) {
        #expect(check("federation-upstream", name, json) == "Validation failed\n\n\(text)\n")
    }

    @Test("accepted upstreams (as RabbitMQ accepts them)", arguments: [
        #"{"uri": "amqp://x", "prefetch-count": -1}"#, #"{"uri": "amqp://x", "max-hops": 0}"#,
        #"{"uri": "amqp://u:p@x", "expires": 0}"#, #"{"uri": "amqp://u:p@x", "resource-cleanup-mode": "never"}"#,
        #"{"uri": ["amqps://h:5671?cacertfile=/c.pem&verify=verify_peer", "amqp://y"], "ack-mode": "on-confirm", "exchange": "up", "trust-user-id": false}"#,
        #"{"uri": "amqp://x", "queue-type": "quorum"}"#,
    ])
    func acceptedUpstreams(json: String) {
        #expect(check("federation-upstream", "ok", json) == nil)
    }

    @Test("upstream sets")
    func sets() {
        #expect(check("federation-upstream-set", "s", "{}") == nil)
        #expect(check("federation-upstream-set", "v", #"[{"upstream": "a", "max-hops": 2}]"#) == nil)
        #expect(check("federation-upstream-set", "t", #"[{"exchange": "x"}]"#) == "Validation failed\n\nKey \"upstream\" not found in t\n")
        #expect(check("federation-upstream-set", "u", #"[{"upstream": "a", "bogus": 1}]"#)
            == "Validation failed\n\nUnrecognised terms [{<<\"bogus\">>,1}] in u\n")
    }

    @Test("other components are not federation's business")
    func others() {
        #expect(check("vhost-limits", "limits", #"{"max-queues": 3}"#) == nil)
    }

    @Test("policy keys: one of upstream or set, a name")
    func policies() {
        let both = Policy(name: "p1", vhost: "/", pattern: "^x", definition: ["federation-upstream": .string("a"), "federation-upstream-set": .string("all")])
        #expect(throws: AdminError.self) { try both.validate() }
        do throws(AdminError) { try both.validate() } catch {
            #expect(error.description.contains("cannot specify federation-upstream, federation-upstream-set or federation-upstream-pattern together"))
        }
        let int = Policy(name: "p2", vhost: "/", pattern: "^x", definition: ["federation-upstream": .int(5)])
        do throws(AdminError) {
            try int.validate()
            Issue.record("accepted")
        } catch {
            #expect(error.description == "Validation failed\n\n5 is not a valid federation upstream name\n")
        }
        let strategy = Policy(name: "p3", vhost: "/", pattern: "^x", definition: ["dead-letter-strategy": .string("at-least-once")])
        #expect(throws: Never.self) { try strategy.validate() }
    }
}
