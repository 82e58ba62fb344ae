import AMQPProtocol
import Testing

@testable import WarrenCore

/// The handshake and close state machine, one event and its action per line.
@Suite("Connection state machine")
struct ConnectionStateMachineTests {
    static let limits = ConnectionStateMachine.Limits(channelMax: 2047, frameMax: 131_072, heartbeat: 60)
    func machine() -> ConnectionStateMachine { ConnectionStateMachine(serverLimits: Self.limits, serverProperties: ["product": "Warren"]) }
    let startOk = AMQPMethod.connectionStartOk(ConnectionStartOk(clientProperties: [:], mechanism: "PLAIN", response: Array("\0guest\0guest".utf8)))
    let tune = AMQPMethod.connectionTune(ConnectionTune(channelMax: 2047, frameMax: 131_072, heartbeat: 60))

    /// A machine driven to the state after `authenticated()` (waiting for tune-ok).
    func tuning() -> ConnectionStateMachine {
        var m = machine()
        _ = m.protocolHeaderReceived(.amqp091)
        _ = m.methodReceived(startOk)
        _ = m.authenticated()
        return m
    }

    /// A machine with the connection open.
    func opened() -> ConnectionStateMachine {
        var m = tuning()
        _ = m.methodReceived(.connectionTuneOk(ConnectionTuneOk(channelMax: 0, frameMax: 0, heartbeat: 0)))
        _ = m.methodReceived(.connectionOpen(ConnectionOpen()))
        _ = m.virtualHostOpened()
        return m
    }

    @Test("a full handshake, then the client closes")
    func happyPath() {
        var m = machine()
        guard case .send(.connectionStart) = m.protocolHeaderReceived(.amqp091) else { Issue.record("expected start"); return }
        #expect(m.methodReceived(startOk) == .authenticate(mechanism: "PLAIN", response: Array("\0guest\0guest".utf8)))
        #expect(m.authenticated() == .send(tune))
        #expect(m.methodReceived(.connectionTuneOk(ConnectionTuneOk(channelMax: 100, frameMax: 8192, heartbeat: 10)))
            == .applyLimits(.init(channelMax: 100, frameMax: 8192, heartbeat: 10)))
        #expect(m.methodReceived(.connectionOpen(ConnectionOpen(virtualHost: "/"))) == .openVirtualHost("/"))
        #expect(m.virtualHostOpened() == .send(.connectionOpenOk(ConnectionOpenOk())))
        #expect(m.isOpen)
        #expect(m.methodReceived(.connectionClose(ConnectionClose(replyCode: 200, replyText: "bye", classID: 0, methodID: 0))) == .sendCloseOkAndDisconnect)
        #expect(m.state == .closed)
    }

    @Test("a wrong protocol header is answered with ours")
    func badHeader() {
        var m = machine()
        #expect(m.protocolHeaderReceived(AMQPProtocolHeader(bytes: (0x41, 0x4D, 0x51, 0x50, 0, 0, 8, 0))) == .rejectProtocolHeader)
        #expect(m.state == .closed)
    }

    @Test("tune-ok: 0 means the server's limit; out-of-range values are 530")
    func tuneOk() {
        var m = tuning()
        #expect(m.methodReceived(.connectionTuneOk(ConnectionTuneOk(channelMax: 0, frameMax: 0, heartbeat: 0)))
            == .applyLimits(.init(channelMax: 2047, frameMax: 131_072, heartbeat: 0)))

        for (tuneOk, text) in [
            (ConnectionTuneOk(channelMax: 10, frameMax: 1024, heartbeat: 0), "NOT_ALLOWED - negotiated frame_max = 1024 is lower than the minimum allowed value (4096)"),
            (ConnectionTuneOk(channelMax: 10, frameMax: 200_000, heartbeat: 0), "NOT_ALLOWED - negotiated frame_max = 200000 is higher than the maximum allowed value (131072)"),
            (ConnectionTuneOk(channelMax: 3000, frameMax: 4096, heartbeat: 0), "NOT_ALLOWED - negotiated channel_max = 3000 is higher than the maximum allowed value (2047)"),
        ] {
            var m2 = tuning()
            #expect(m2.methodReceived(.connectionTuneOk(tuneOk)) == .close(AMQPError(code: .notAllowed, text: text)))
            #expect(m2.state == .closing)
        }
    }

    @Test("authentication failure: close for clients that asked, silent disconnect for others")
    func authFailure() {
        let refused = AMQPError.accessRefused("Login was refused")
        var polite = machine()
        _ = polite.protocolHeaderReceived(.amqp091)
        let caps: FieldTable = ["capabilities": .table(["authentication_failure_close": true])]
        _ = polite.methodReceived(.connectionStartOk(ConnectionStartOk(clientProperties: caps, response: [])))
        #expect(polite.authenticationFailed(refused) == .close(refused))

        var old = machine()
        _ = old.protocolHeaderReceived(.amqp091)
        _ = old.methodReceived(startOk)
        #expect(old.authenticationFailed(refused) == .disconnect)
    }

    @Test("an unknown mechanism is refused")
    func mechanism() {
        var m = machine()
        _ = m.protocolHeaderReceived(.amqp091)
        let action = m.methodReceived(.connectionStartOk(ConnectionStartOk(clientProperties: [:], mechanism: "EXTERNAL", response: [])))
        #expect(action == .close(.commandInvalid("unknown authentication mechanism 'EXTERNAL'")))
    }

    @Test("while closing only close-ok (or a crossing close) matters")
    func closing() {
        var m = opened()
        let error = AMQPError.connectionForced("shutdown")
        #expect(m.closeRequested(error) == .close(error))
        #expect(m.closeRequested(error) == .none)
        #expect(m.methodReceived(.connectionOpen(ConnectionOpen())) == .none)
        #expect(m.methodReceived(.connectionCloseOk(ConnectionCloseOk())) == .disconnect)
    }

    @Test("methods out of place are errors with RabbitMQ's codes")
    func outOfPlace() {
        var m = opened()
        #expect(m.methodReceived(.channelOpen(ChannelOpen()))
            == .close(AMQPError(.channelError, "unexpected method in connection state running", classID: 20, methodID: 10)))
    }
}
