import AMQPProtocol
@testable import WarrenCore
import Testing

/// RabbitMQ's own topic-matching table (bindings t1...t27), with the queues each routing key
/// reached on RabbitMQ 3.10.8, recorded from a live broker (the empty-word rows included).
enum TopicTable {
    static let bindings: [(key: String, name: String)] = [
        ("a.b.c", "t1"),
        ("a.*.c", "t2"),
        ("a.#.b", "t3"),
        ("a.b.b.c", "t4"),
        ("#", "t5"),
        ("#.#", "t6"),
        ("#.b", "t7"),
        ("*.*", "t8"),
        ("a.*", "t9"),
        ("*.b.c", "t10"),
        ("a.#", "t11"),
        ("a.#.#", "t12"),
        ("b.b.c", "t13"),
        ("a.b.b", "t14"),
        ("a.b", "t15"),
        ("b.c", "t16"),
        ("", "t17"),
        ("*.*.*", "t18"),
        ("vodka.martini", "t19"),
        ("a.b.c", "t20"),
        ("*.#", "t21"),
        ("#.*.#", "t22"),
        ("*.#.#", "t23"),
        ("#.#.#", "t24"),
        ("*", "t25"),
        ("#.b.#", "t26"),
        ("args-test", "t27"),
    ]
    static let expected: [(routingKey: String, matches: [String])] = [
        ("a.b.c", ["t1", "t2", "t5", "t6", "t10", "t11", "t12", "t18", "t20", "t21", "t22", "t23", "t24", "t26"]),
        ("a.b", ["t3", "t5", "t6", "t7", "t8", "t9", "t11", "t12", "t15", "t21", "t22", "t23", "t24", "t26"]),
        ("a.b.b", ["t3", "t5", "t6", "t7", "t11", "t12", "t14", "t18", "t21", "t22", "t23", "t24", "t26"]),
        ("", ["t5", "t6", "t17", "t24"]),
        ("b.c.c", ["t5", "t6", "t18", "t21", "t22", "t23", "t24", "t26"]),
        ("a.a.a.a.a", ["t5", "t6", "t11", "t12", "t21", "t22", "t23", "t24"]),
        ("vodka.gin", ["t5", "t6", "t8", "t21", "t22", "t23", "t24"]),
        ("vodka.martini", ["t5", "t6", "t8", "t19", "t21", "t22", "t23", "t24"]),
        ("b.b.c", ["t5", "t6", "t10", "t13", "t18", "t21", "t22", "t23", "t24", "t26"]),
        ("nothing.here.at.all", ["t5", "t6", "t21", "t22", "t23", "t24"]),
        ("oneword", ["t5", "t6", "t21", "t22", "t23", "t24", "t25"]),
        ("args-test", ["t5", "t6", "t21", "t22", "t23", "t24", "t25", "t27"]),
        ("a..b", ["t3", "t5", "t6", "t7", "t11", "t12", "t18", "t21", "t22", "t23", "t24", "t26"]),
        (".", ["t5", "t6", "t8", "t21", "t22", "t23", "t24"]),
        ("a.", ["t5", "t6", "t8", "t9", "t11", "t12", "t21", "t22", "t23", "t24"]),
        (".a", ["t5", "t6", "t8", "t21", "t22", "t23", "t24"]),
        ("#", ["t5", "t6", "t21", "t22", "t23", "t24", "t25"]),
        ("*", ["t5", "t6", "t21", "t22", "t23", "t24", "t25"]),
        ("a.*.c", ["t2", "t5", "t6", "t11", "t12", "t18", "t21", "t22", "t23", "t24"]),
    ]
}
