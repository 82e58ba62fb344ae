public import AMQPProtocol
public import NIOCore

/// What nodes say to each other about queue contents (`ClusterQueues`), in batches: publishes
/// to a queue's home node, deliveries to a consumer's node, acks and credit back. One batch per
/// peer per turn of the broker loop goes out as one cluster frame.
///
/// A batch starts with the sender's session generation for the receiver and the receiver's
/// generation as the sender last heard it (`BatchHeader`); a batch for an older generation of
/// the receiver is from a session the receiver already ended, and is ignored.
enum QueueLinkMessage {
    /// Route-free enqueue: the message goes to these queues of the receiver (routing happened
    /// on the node it arrived at). `confirm` 0: no answer wanted.
    case publish(confirm: UInt64, vhost: String, queues: [String], message: Message)
    /// The publishes with these ids are safe (on disk where they must be), or refused.
    case confirm(id: UInt64, ok: Bool)
    /// Publishes taken: the sender may send this many more.
    case publishCredit(UInt32)
    case consume(request: UInt64, consumer: UInt64, vhost: String, queue: String, tag: String, noAck: Bool, exclusive: Bool,
                 prefetch: UInt32, arguments: FieldTable)
    /// basic.cancel (or a closed channel); answered once every delivery made to it was sent.
    case cancel(request: UInt64, consumer: UInt64)
    case deliver(consumer: UInt64, seq: UInt64, redelivered: Bool, message: Message)
    /// Deliveries the consumer's node handed to its client: the home node may send that many more.
    case consumerCredit(consumer: UInt64, UInt32)
    case settle(outcome: UInt8, vhost: String, queue: String, seqs: [UInt64])
    case get(request: UInt64, vhost: String, queue: String, noAck: Bool)
    /// basic.get's answer: nothing (seq 0, no message), or the head message.
    case getReply(request: UInt64, seq: UInt64, redelivered: Bool, remaining: UInt32, message: Message?)
    case purge(request: UInt64, vhost: String, queue: String)
    case counts(request: UInt64, vhost: String, queue: String)
    /// An answer: two numbers (purged count; messages and consumers), or an AMQP error.
    case reply(request: UInt64, result: Result<(UInt32, UInt32), AMQPError>)

    static let ack: UInt8 = 0, requeue: UInt8 = 1, drop: UInt8 = 2

    func write(into b: inout ByteBuffer) {
        switch self {
        case .publish(let confirm, let vhost, let queues, let message):
            b.writeInteger(UInt8(1))
            b.writeInteger(confirm)
            b.amqpWriteShortString(vhost)
            b.writeInteger(UInt16(queues.count))
            for q in queues { b.amqpWriteShortString(q) }
            message.write(into: &b)
        case .confirm(let id, let ok):
            b.writeInteger(UInt8(2))
            b.writeInteger(id)
            b.writeInteger(UInt8(ok ? 1 : 0))
        case .publishCredit(let n):
            b.writeInteger(UInt8(3))
            b.writeInteger(n)
        case .consume(let request, let consumer, let vhost, let queue, let tag, let noAck, let exclusive, let prefetch, let arguments):
            b.writeInteger(UInt8(4))
            b.writeInteger(request)
            b.writeInteger(consumer)
            b.amqpWriteShortString(vhost)
            b.amqpWriteShortString(queue)
            b.amqpWriteShortString(tag)
            b.writeInteger(UInt8((noAck ? 1 : 0) | (exclusive ? 2 : 0)))
            b.writeInteger(prefetch)
            b.amqpWriteFieldTable(arguments)
        case .cancel(let request, let consumer):
            b.writeInteger(UInt8(5))
            b.writeInteger(request)
            b.writeInteger(consumer)
        case .deliver(let consumer, let seq, let redelivered, let message):
            b.writeInteger(UInt8(7))
            b.writeInteger(consumer)
            b.writeInteger(seq)
            b.writeInteger(UInt8(redelivered ? 1 : 0))
            message.write(into: &b)
        case .consumerCredit(let consumer, let n):
            b.writeInteger(UInt8(8))
            b.writeInteger(consumer)
            b.writeInteger(n)
        case .settle(let outcome, let vhost, let queue, let seqs):
            b.writeInteger(UInt8(9))
            b.writeInteger(outcome)
            b.amqpWriteShortString(vhost)
            b.amqpWriteShortString(queue)
            b.writeInteger(UInt32(seqs.count))
            for s in seqs { b.writeInteger(s) }
        case .get(let request, let vhost, let queue, let noAck):
            b.writeInteger(UInt8(10))
            b.writeInteger(request)
            b.amqpWriteShortString(vhost)
            b.amqpWriteShortString(queue)
            b.writeInteger(UInt8(noAck ? 1 : 0))
        case .getReply(let request, let seq, let redelivered, let remaining, let message):
            b.writeInteger(UInt8(11))
            b.writeInteger(request)
            b.writeInteger(seq)
            b.writeInteger(UInt8(redelivered ? 1 : 0))
            b.writeInteger(remaining)
            b.writeInteger(UInt8(message == nil ? 0 : 1))
            if let message { message.write(into: &b) }
        case .purge(let request, let vhost, let queue):
            b.writeInteger(UInt8(12))
            b.writeInteger(request)
            b.amqpWriteShortString(vhost)
            b.amqpWriteShortString(queue)
        case .counts(let request, let vhost, let queue):
            b.writeInteger(UInt8(13))
            b.writeInteger(request)
            b.amqpWriteShortString(vhost)
            b.amqpWriteShortString(queue)
        case .reply(let request, let result):
            b.writeInteger(UInt8(14))
            b.writeInteger(request)
            switch result {
            case .success(let (x, y)):
                b.writeInteger(UInt8(1))
                b.writeInteger(x)
                b.writeInteger(y)
            case .failure(let e):
                b.writeInteger(UInt8(0))
                b.writeInteger(e.code.rawValue)
                b.amqpWriteLongString(e.text)
            }
        }
    }

    /// Reads one message; bodies and property bytes are slices of `b` (no copy).
    static func read(_ b: inout ByteBuffer) throws(AMQPError) -> QueueLinkMessage {
        let kind = try b.amqpReadUInt8()
        switch kind {
        case 1:
            let confirm = try b.amqpReadUInt64()
            let vhost = try b.amqpReadShortString()
            let n = try b.amqpReadUInt16()
            var queues: [String] = []
            queues.reserveCapacity(Int(n))
            for _ in 0..<n { queues.append(try b.amqpReadShortString()) }
            return .publish(confirm: confirm, vhost: vhost, queues: queues, message: try Message.read(from: &b))
        case 2:
            return .confirm(id: try b.amqpReadUInt64(), ok: try b.amqpReadUInt8() != 0)
        case 3:
            return .publishCredit(try b.amqpReadUInt32())
        case 4:
            let request = try b.amqpReadUInt64()
            let consumer = try b.amqpReadUInt64()
            let vhost = try b.amqpReadShortString()
            let queue = try b.amqpReadShortString()
            let tag = try b.amqpReadShortString()
            let flags = try b.amqpReadUInt8()
            let prefetch = try b.amqpReadUInt32()
            let arguments = try b.amqpReadFieldTable()
            return .consume(
                request: request, consumer: consumer, vhost: vhost, queue: queue, tag: tag, noAck: flags & 1 != 0, exclusive: flags & 2 != 0,
                prefetch: prefetch, arguments: arguments)
        case 5: return .cancel(request: try b.amqpReadUInt64(), consumer: try b.amqpReadUInt64())
        case 7:
            let consumer = try b.amqpReadUInt64()
            let seq = try b.amqpReadUInt64()
            let redelivered = try b.amqpReadUInt8() != 0
            return .deliver(consumer: consumer, seq: seq, redelivered: redelivered, message: try Message.read(from: &b))
        case 8: return .consumerCredit(consumer: try b.amqpReadUInt64(), try b.amqpReadUInt32())
        case 9:
            let outcome = try b.amqpReadUInt8()
            let vhost = try b.amqpReadShortString()
            let queue = try b.amqpReadShortString()
            let n = try b.amqpReadUInt32()
            guard Int(n) * 8 <= b.readableBytes else { throw .malformed("settle count") }
            var seqs: [UInt64] = []
            seqs.reserveCapacity(Int(n))
            for _ in 0..<n { seqs.append(try b.amqpReadUInt64()) }
            return .settle(outcome: outcome, vhost: vhost, queue: queue, seqs: seqs)
        case 10:
            let request = try b.amqpReadUInt64()
            let vhost = try b.amqpReadShortString()
            let queue = try b.amqpReadShortString()
            return .get(request: request, vhost: vhost, queue: queue, noAck: try b.amqpReadUInt8() != 0)
        case 11:
            let request = try b.amqpReadUInt64()
            let seq = try b.amqpReadUInt64()
            let redelivered = try b.amqpReadUInt8() != 0
            let remaining = try b.amqpReadUInt32()
            let has = try b.amqpReadUInt8() != 0
            return .getReply(request: request, seq: seq, redelivered: redelivered, remaining: remaining, message: has ? try Message.read(from: &b) : nil)
        case 12:
            let request = try b.amqpReadUInt64()
            let vhost = try b.amqpReadShortString()
            return .purge(request: request, vhost: vhost, queue: try b.amqpReadShortString())
        case 13:
            let request = try b.amqpReadUInt64()
            let vhost = try b.amqpReadShortString()
            return .counts(request: request, vhost: vhost, queue: try b.amqpReadShortString())
        case 14:
            let request = try b.amqpReadUInt64()
            if try b.amqpReadUInt8() == 1 {
                return .reply(request: request, result: .success((try b.amqpReadUInt32(), try b.amqpReadUInt32())))
            }
            let code = try b.amqpReadUInt16()
            let text = try b.amqpReadLongString()
            return .reply(request: request, result: .failure(AMQPError(code: AMQPReplyCode(rawValue: code) ?? .internalError, text: text)))
        default:
            throw .malformed("unknown queue link message \(kind)")
        }
    }
}
