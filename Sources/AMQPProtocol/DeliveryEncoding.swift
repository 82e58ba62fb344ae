public import NIOCore

extension ByteBuffer {
    /// The constant head of a consumer's `basic.deliver` arguments: class and method ids and the
    /// consumer tag. Encoded once per consumer, copied into every delivery.
    public static func amqpDeliverPrefix(consumerTag: String) -> ByteBuffer {
        var b = ByteBuffer()
        b.writeMultipleIntegers(UInt16(60), UInt16(60))
        b.amqpWriteShortString(consumerTag)
        return b
    }

    /// Writes a whole delivery, `basic.deliver` (or any method whose arguments are `prefix`, a
    /// delivery tag, a flag octet, exchange and routing key) then the content header from already
    /// encoded properties, then the body, in one pass over raw memory: one capacity check and one
    /// exclusive access instead of one per field. Bodies larger than a frame fall back to
    /// `writeAMQPBodyFrames`.
    @inlinable
    public mutating func writeAMQPDelivery(
        channel: UInt16, prefix: ByteBuffer, deliveryTag: UInt64, redelivered: Bool, exchange: String,
        routingKey: String, encodedProperties: ByteBuffer, body: ByteBuffer, maxFrameSize: UInt32
    ) {
        var exchange = exchange
        var routingKey = routingKey
        let exchangeLength = min(exchange.utf8.count, 255)
        let routingKeyLength = min(routingKey.utf8.count, 255)
        let methodPayload = prefix.readableBytes + 8 + 1 + 1 + exchangeLength + 1 + routingKeyLength
        let headerPayload = 12 + encodedProperties.readableBytes
        let bodyBytes = body.readableBytes
        let maxBodyPayload = maxFrameSize == 0 ? Int.max : Int(maxFrameSize) - 8
        let bodyInline = bodyBytes <= maxBodyPayload
        let total = 8 + methodPayload + 8 + headerPayload + (bodyInline && bodyBytes > 0 ? 8 + bodyBytes : 0)

        exchange.withUTF8 { ex in
            routingKey.withUTF8 { rk in
                prefix.withUnsafeReadableBytes { pre in
                    encodedProperties.withUnsafeReadableBytes { props in
                        body.withUnsafeReadableBytes { bodyPtr in
                            _ = self.writeWithUnsafeMutableBytes(minimumWritableBytes: total) { out in
                                let p = out.baseAddress!
                                var o = 0
                                func put<T: FixedWidthInteger>(_ v: T) {
                                    p.storeBytes(of: v.bigEndian, toByteOffset: o, as: T.self)
                                    o += MemoryLayout<T>.size
                                }
                                func copy(_ src: UnsafeRawBufferPointer, _ n: Int) {
                                    if n > 0 { (p + o).copyMemory(from: src.baseAddress!, byteCount: n) }
                                    o += n
                                }
                                // Method frame.
                                put(AMQPFrameType.method)
                                put(channel)
                                put(UInt32(methodPayload))
                                copy(UnsafeRawBufferPointer(pre), pre.count)
                                put(deliveryTag)
                                put(UInt8(redelivered ? 1 : 0))
                                put(UInt8(exchangeLength))
                                copy(UnsafeRawBufferPointer(ex), exchangeLength)
                                put(UInt8(routingKeyLength))
                                copy(UnsafeRawBufferPointer(rk), routingKeyLength)
                                put(AMQPFrameType.end)
                                // Content header frame.
                                put(AMQPFrameType.header)
                                put(channel)
                                put(UInt32(headerPayload))
                                put(UInt16(60))
                                put(UInt16(0))
                                put(UInt64(bodyBytes))
                                copy(props, props.count)
                                put(AMQPFrameType.end)
                                // Body frame, when it fits in one.
                                if bodyInline && bodyBytes > 0 {
                                    put(AMQPFrameType.body)
                                    put(channel)
                                    put(UInt32(bodyBytes))
                                    copy(bodyPtr, bodyBytes)
                                    put(AMQPFrameType.end)
                                }
                                return o
                            }
                        }
                    }
                }
            }
        }
        if !bodyInline {
            self.writeAMQPBodyFrames(channel: channel, body, maxFrameSize: maxFrameSize)
        }
    }
}
