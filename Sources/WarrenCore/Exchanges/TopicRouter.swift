public import AMQPProtocol

/// Topic exchange, with RabbitMQ's exact semantics.
///
/// Keys are split on `.` into words; the empty key has no words, and `a..b` has an empty middle
/// word. In a binding key `*` matches exactly one word (which may be empty) and `#` matches zero
/// or more words. Bindings live in a trie of words, so routing cost grows with the key's length
/// and the patterns that can match, not with the number of bindings.
public final class TopicRouter: ExchangeRouter {
    final class Node {
        var children: [Substring: Node] = [:]
        var star: Node?
        var hash: Node?
        var destinations: [BindingDestination] = []

        var isEmpty: Bool { children.isEmpty && star == nil && hash == nil && destinations.isEmpty }
    }

    private let root = Node()

    public init() {}

    /// Splits a key as RabbitMQ does: "" has no words; every dot separates two words.
    public static func words(_ key: String) -> [Substring] {
        if key.isEmpty { return [] }
        return key.split(separator: ".", omittingEmptySubsequences: false)
    }

    public func add(_ binding: Binding) {
        var node = root
        for word in Self.words(binding.routingKey) {
            switch word {
            case "*":
                if node.star == nil { node.star = Node() }
                node = node.star!
            case "#":
                if node.hash == nil { node.hash = Node() }
                node = node.hash!
            default:
                if let next = node.children[word] {
                    node = next
                } else {
                    let next = Node()
                    node.children[word] = next
                    node = next
                }
            }
        }
        node.destinations.append(binding.destination)
    }

    public func remove(_ binding: Binding) {
        _ = remove(binding.destination, words: Self.words(binding.routingKey)[...], from: root)
    }

    /// Removes one destination entry and prunes nodes left empty. Returns true if `node` is empty.
    private func remove(_ destination: BindingDestination, words: ArraySlice<Substring>, from node: Node) -> Bool {
        guard let word = words.first else {
            if let i = node.destinations.firstIndex(of: destination) { node.destinations.remove(at: i) }
            return node.isEmpty
        }
        let rest = words.dropFirst()
        switch word {
        case "*":
            if let child = node.star, remove(destination, words: rest, from: child) { node.star = nil }
        case "#":
            if let child = node.hash, remove(destination, words: rest, from: child) { node.hash = nil }
        default:
            if let child = node.children[word], remove(destination, words: rest, from: child) {
                node.children[word] = nil
            }
        }
        return node.isEmpty
    }

    public func route(routingKey: String, headers: FieldTable?, into out: inout [BindingDestination]) {
        let words = Self.words(routingKey)
        match(root, words, 0, &out)
    }

    private func match(_ node: Node, _ words: [Substring], _ i: Int, _ out: inout [BindingDestination]) {
        if i == words.count {
            out.append(contentsOf: node.destinations)
        } else {
            if let child = node.children[words[i]] { match(child, words, i + 1, &out) }
            if let star = node.star { match(star, words, i + 1, &out) }
        }
        if let hash = node.hash {
            // "#" swallows zero or more words: try every split point.
            var j = i
            while j <= words.count {
                match(hash, words, j, &out)
                j += 1
            }
        }
    }
}
