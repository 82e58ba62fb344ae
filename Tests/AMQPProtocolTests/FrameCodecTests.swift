import AMQPProtocol
import NIOCore
import NIOTestUtils
import Testing

@Suite("Frame codec")
struct FrameCodecTests {
    static let body = ByteBuffer(string: "hello body")
    static let frames: [AMQPFrame] = [
        .method(channel: 0, .connectionTuneOk(ConnectionTuneOk(channelMax: 2047, frameMax: 131_072, heartbeat: 60))),
        .method(channel: 7, .basicPublish(BasicPublish(exchange: "x", routingKey: "rk", mandatory: true))),
        .header(channel: 7, ContentHeader(bodySize: 10, properties: BasicProperties(contentType: "text/plain", headers: ["a": 1]))),
        .body(channel: 7, body),
        .heartbeat,
        .method(channel: 65535, .basicAck(BasicAck(deliveryTag: 1 << 40, multiple: true))),
    ]

    @Test("the decoder yields the same frames fed byte by byte, in chunks, or all at once")
    func verifier() throws {
        let pairs = Self.frames.map { (encodeFrames([$0]), [$0]) } + [(encodeFrames(Self.frames), Self.frames)]
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs) { AMQPFrameDecoder() }
    }

    @Test("the frame reader gives the same frames whatever the read boundaries", arguments: [1, 2, 3, 7, 8, 64, 100_000])
    func readerChunks(_ chunk: Int) throws {
        var all = encodeFrames(Self.frames)
        var reader = AMQPFrameReader(decoder: AMQPFrameDecoder())
        var got: [AMQPFrame] = []
        while all.readableBytes > 0 {
            reader.append(all.readSlice(length: min(chunk, all.readableBytes))!)
            while let f = try reader.next() { got.append(f) }
        }
        #expect(got == Self.frames)
        #expect(reader.bufferedBytes == 0)
    }

    @Test("the protocol header is read first when expected")
    func protocolHeader() throws {
        var decoder = AMQPFrameDecoder(expectsProtocolHeader: true)
        var b = ByteBuffer(bytes: [0x41, 0x4D, 0x51, 0x50, 0, 0, 9])
        #expect(try decoder.next(&b) == nil)
        b.writeInteger(UInt8(1))
        #expect(try decoder.next(&b) == .protocolHeader(.amqp091))
        var http = ByteBuffer(string: "GET")
        var d2 = AMQPFrameDecoder(expectsProtocolHeader: true)
        guard case .protocolHeader(let h) = try d2.next(&http) else {
            Issue.record("expected a protocol header")
            return
        }
        #expect(!h.isAMQP091, "a peer not starting with 'A' is answered at once")
    }

    @Test("a frame larger than frame_max is refused from its header alone")
    func oversize() throws {
        var decoder = AMQPFrameDecoder(maxFrameSize: 4096)
        // Only the 7-byte header of a 4 GiB frame: refused before any payload arrives.
        var b = ByteBuffer(bytes: [1, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: AMQPError.self) { try decoder.next(&b) }
        var ok = ByteBuffer(bytes: [3, 0, 1, 0, 0, 0x0F, 0xF8])  // exactly 4088: fine, waits for bytes
        #expect(try decoder.next(&ok) == nil)
    }

    @Test("framing errors carry FRAME_ERROR or UNEXPECTED_FRAME", arguments: [
        ([UInt8]([1, 0, 0, 0, 0, 0, 4, 0, 20, 0, 10, 0x00]), AMQPReplyCode.frameError),  // bad end octet
        ([9, 0, 0, 0, 0, 0, 0, 0xCE], .frameError),  // unknown frame type
        ([8, 0, 1, 0, 0, 0, 0, 0xCE], .unexpectedFrame),  // heartbeat off channel 0
        ([1, 0, 1, 0, 0, 0, 4, 0, 60, 0, 99, 0xCE], .notImplemented),  // unknown method
    ])
    func framingErrors(_ bytes: [UInt8], _ code: AMQPReplyCode) {
        var decoder = AMQPFrameDecoder()
        var b = ByteBuffer(bytes: bytes)
        do {
            _ = try decoder.next(&b)
            Issue.record("expected \(code)")
        } catch {
            #expect(error.code == code)
        }
    }

    @Test("a body is split into frames that fit frame_max", arguments: [0, 1, 4087, 4088, 4089, 10_000])
    func bodySplit(_ size: Int) throws {
        let body = ByteBuffer(repeating: 0xAB, count: size)
        var out = ByteBuffer()
        out.writeAMQPCommand(channel: 1, .basicPublish(BasicPublish(routingKey: "q")), body: body, maxFrameSize: 4096)
        var decoder = AMQPFrameDecoder(maxFrameSize: 4096)
        var assembler = CommandAssembler()
        var command: AMQPCommand?
        var bodyFrames = 0
        while let frame = try decoder.next(&out) {
            switch frame {
            case .method(_, let m): command = try assembler.method(m)
            case .header(_, let h): command = try assembler.header(h)
            case .body(_, let b):
                bodyFrames += 1
                #expect(b.readableBytes <= 4088)
                command = try assembler.body(b)
            default: Issue.record("unexpected frame")
            }
        }
        #expect(bodyFrames == (size + 4087) / 4088)
        #expect(command?.body == body)
    }

    @Test("decoded content headers keep their property bytes for forwarding")
    func encodedProperties() throws {
        let props = BasicProperties(contentType: "a", headers: ["h": .string("v")], deliveryMode: 2)
        var b = encodeFrames([.header(channel: 1, ContentHeader(bodySize: 3, properties: props))])
        var decoder = AMQPFrameDecoder()
        guard case .header(_, let h) = try decoder.next(&b) else {
            Issue.record("expected a header")
            return
        }
        var reencoded = ByteBuffer()
        props.encode(into: &reencoded)
        #expect(h.encodedProperties == reencoded)
        var forwarded = ByteBuffer()
        forwarded.writeAMQPHeaderFrame(channel: 1, bodySize: 3, encodedProperties: h.encodedProperties!)
        #expect(forwarded == encodeFrames([.header(channel: 1, ContentHeader(bodySize: 3, properties: props))]))
    }
}

@Suite("Command assembler")
struct CommandAssemblerTests {
    let publish = AMQPMethod.basicPublish(BasicPublish(routingKey: "q"))

    @Test("method, header and body frames make one command; a one-frame body is not copied")
    func assemble() throws {
        var a = CommandAssembler()
        #expect(try a.method(publish) == nil)
        #expect(try a.header(ContentHeader(bodySize: 5)) == nil)
        let body = ByteBuffer(string: "hello")
        let c = try a.body(body)
        #expect(c?.body == body)
        #expect(!a.isAssembling)
    }

    @Test("a body in several frames is joined")
    func multiFrame() throws {
        var a = CommandAssembler()
        _ = try a.method(publish)
        _ = try a.header(ContentHeader(bodySize: 6))
        #expect(try a.body(ByteBuffer(string: "ab")) == nil)
        #expect(try a.body(ByteBuffer(string: "cd")) == nil)
        #expect(try a.body(ByteBuffer(string: "ef"))?.body == ByteBuffer(string: "abcdef"))
    }

    @Test("an empty body needs no body frame")
    func emptyBody() throws {
        var a = CommandAssembler()
        _ = try a.method(publish)
        #expect(try a.header(ContentHeader(bodySize: 0))?.body.readableBytes == 0)
    }

    @Test("frames out of order are UNEXPECTED_FRAME with RabbitMQ's texts")
    func outOfOrder() throws {
        var a = CommandAssembler()
        #expect(throws: AMQPError(.unexpectedFrame, "expected method frame, got non method frame instead")) {
            try a.header(ContentHeader(bodySize: 1))
        }
        _ = try a.method(publish)
        #expect(throws: AMQPError(.unexpectedFrame, "expected content header for class 60, got non content header frame instead", classID: 60, methodID: 40)) {
            try a.method(publish)
        }
        var b = CommandAssembler()
        _ = try b.method(publish)
        #expect(throws: AMQPError(.unexpectedFrame, "expected content header for class 60, got one for class 50 instead", classID: 60, methodID: 40)) {
            try b.header(ContentHeader(classID: 50, bodySize: 1))
        }
        var c = CommandAssembler()
        _ = try c.method(publish)
        _ = try c.header(ContentHeader(bodySize: 2))
        #expect(throws: AMQPError.self) { try c.body(ByteBuffer(string: "toolong")) }
    }

    @Test("a body over the size limit is refused at its header, soft")
    func tooLarge() throws {
        var a = CommandAssembler(maxBodySize: 10)
        _ = try a.method(publish)
        do {
            _ = try a.header(ContentHeader(bodySize: 11))
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .preconditionFailed)
            #expect(error.text == "PRECONDITION_FAILED - message size 11 is larger than configured max size 10")
            #expect(!error.isHard)
        }
    }
}
