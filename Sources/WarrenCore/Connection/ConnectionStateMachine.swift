public import AMQPProtocol

/// The lifecycle of an AMQP connection on channel 0, as a pure state machine: protocol header,
/// start / start-ok, tune / tune-ok, open / open-ok, and close in both directions.
///
/// Each event returns the one action the owner must carry out. Authentication and the vhost
/// check are actions whose results come back as events, so the machine never touches the broker.
public struct ConnectionStateMachine: Sendable {
    public struct Limits: Sendable, Equatable {
        public var channelMax: UInt16
        public var frameMax: UInt32
        public var heartbeat: UInt16
        public init(channelMax: UInt16, frameMax: UInt32, heartbeat: UInt16) {
            self.channelMax = channelMax
            self.frameMax = frameMax
            self.heartbeat = heartbeat
        }
    }

    public enum State: Sendable, Equatable {
        case awaitingProtocolHeader
        case awaitingStartOk
        case authenticating
        case awaitingTuneOk
        case awaitingOpen
        case openingVirtualHost
        case open
        /// We sent connection.close and wait for close-ok; everything else is dropped.
        case closing
        case closed
    }

    public enum Action: Sendable, Equatable {
        case none
        /// Answer an unsupported protocol header with ours, then close the socket.
        case rejectProtocolHeader
        /// Send a method on channel 0.
        case send(AMQPMethod)
        /// Check the credentials; answer with `authenticated()` or `authenticationFailed(_:)`.
        case authenticate(mechanism: String, response: [UInt8])
        /// Apply negotiated limits (frame size, channel max, heartbeat).
        case applyLimits(Limits)
        /// Open the vhost; answer with `virtualHostOpened()` or `virtualHostRefused(_:)`.
        case openVirtualHost(String)
        /// Send connection.close with this error and wait for close-ok.
        case close(AMQPError)
        /// connection.update-secret: check the user again; answer with `secretUpdated()` or
        /// `secretRefused(_:)`.
        case updateSecret(newSecret: [UInt8], reason: String)
        /// The peer closed: send close-ok, then close the socket.
        case sendCloseOkAndDisconnect
        /// Close the socket (after writing what is pending).
        case disconnect
    }

    public private(set) var state: State = .awaitingProtocolHeader
    public let serverLimits: Limits
    public let serverProperties: FieldTable
    public var mechanisms: String
    /// Whether the client asked to be told why authentication failed (its capabilities table).
    public private(set) var clientWantsAuthFailureClose = false

    public init(serverLimits: Limits, serverProperties: FieldTable, mechanisms: String = "PLAIN AMQPLAIN") {
        self.serverLimits = serverLimits
        self.serverProperties = serverProperties
        self.mechanisms = mechanisms
    }

    public var isOpen: Bool { state == .open }

    // MARK: events

    public mutating func protocolHeaderReceived(_ header: AMQPProtocolHeader) -> Action {
        guard state == .awaitingProtocolHeader else {
            return closeWith(.frameError("unexpected protocol header"))
        }
        guard header.isAMQP091 else {
            state = .closed
            return .rejectProtocolHeader
        }
        state = .awaitingStartOk
        return .send(.connectionStart(ConnectionStart(serverProperties: serverProperties, mechanisms: mechanisms, locales: "en_US")))
    }

    /// A method arrived on channel 0.
    public mutating func methodReceived(_ method: AMQPMethod) -> Action {
        switch (state, method) {
        case (.awaitingStartOk, .connectionStartOk(let m)):
            let caps = m.clientProperties["capabilities"]?.tableValue
            clientWantsAuthFailureClose = caps?["authentication_failure_close"]?.boolValue ?? false
            guard mechanisms.split(separator: " ").contains(Substring(m.mechanism)) || m.mechanism == SASL.internalMechanism else {
                return closeWith(.commandInvalid("unknown authentication mechanism '\(m.mechanism)'"))
            }
            state = .authenticating
            return .authenticate(mechanism: m.mechanism, response: m.response)
        case (.awaitingTuneOk, .connectionTuneOk(let m)):
            return tuneOkReceived(m)
        case (.awaitingOpen, .connectionOpen(let m)):
            state = .openingVirtualHost
            return .openVirtualHost(m.virtualHost)
        case (.open, .connectionClose), (.closing, .connectionClose):
            state = .closed
            return .sendCloseOkAndDisconnect
        case (.closing, .connectionCloseOk):
            state = .closed
            return .disconnect
        case (.closing, _), (.closed, _):
            return .none  // after close, only close-ok counts
        case (.open, .connectionCloseOk):
            return .none  // a stray close-ok; nothing to finish
        case (.open, .connectionUpdateSecret(let m)):
            return .updateSecret(newSecret: m.newSecret, reason: m.reason)
        case (.open, let m) where m.classID == 10:
            return closeWith(AMQPError(.commandInvalid, "unimplemented method", classID: m.classID, methodID: m.methodID))
        case (.open, let m):
            return closeWith(
                AMQPError(.channelError, "unexpected method in connection state running", classID: m.classID, methodID: m.methodID))
        case (_, let m):
            return closeWith(
                AMQPError(
                    .commandInvalid, "unexpected method \(m.name) during connection handshake (state \(state))",
                    classID: m.classID, methodID: m.methodID))
        }
    }

    private mutating func tuneOkReceived(_ m: ConnectionTuneOk) -> Action {
        // 0 from the client means "no limit of mine": the server's limit applies.
        let frameMax = m.frameMax == 0 ? serverLimits.frameMax : m.frameMax
        let channelMax = m.channelMax == 0 ? serverLimits.channelMax : m.channelMax
        if frameMax < UInt32(AMQPConstants.frameMinSize) {
            return closeWith(
                .notAllowed("negotiated frame_max = \(frameMax) is lower than the minimum allowed value (\(AMQPConstants.frameMinSize))"))
        }
        if serverLimits.frameMax != 0 && frameMax > serverLimits.frameMax {
            return closeWith(
                .notAllowed("negotiated frame_max = \(frameMax) is higher than the maximum allowed value (\(serverLimits.frameMax))"))
        }
        if serverLimits.channelMax != 0 && channelMax > serverLimits.channelMax {
            return closeWith(
                .notAllowed(
                    "negotiated channel_max = \(channelMax) is higher than the maximum allowed value (\(serverLimits.channelMax))"))
        }
        state = .awaitingOpen
        return .applyLimits(Limits(channelMax: channelMax, frameMax: frameMax, heartbeat: m.heartbeat))
    }

    public mutating func authenticated() -> Action {
        guard state == .authenticating else { return .none }
        state = .awaitingTuneOk
        return .send(
            .connectionTune(
                ConnectionTune(
                    channelMax: serverLimits.channelMax, frameMax: serverLimits.frameMax, heartbeat: serverLimits.heartbeat)))
    }

    /// Authentication failed. Clients that declared `authentication_failure_close` get a
    /// connection.close saying so; others are disconnected, as RabbitMQ does.
    public mutating func authenticationFailed(_ error: AMQPError) -> Action {
        guard state == .authenticating else { return .none }
        if clientWantsAuthFailureClose { return closeWith(error) }
        state = .closed
        return .disconnect
    }

    public mutating func virtualHostOpened() -> Action {
        guard state == .openingVirtualHost else { return .none }
        state = .open
        return .send(.connectionOpenOk(ConnectionOpenOk()))
    }

    public mutating func secretUpdated() -> Action {
        guard state == .open else { return .none }
        return .send(.connectionUpdateSecretOk(ConnectionUpdateSecretOk()))
    }

    /// RabbitMQ's answer when a backend refuses the new secret: 530, a connection error.
    public mutating func secretRefused() -> Action {
        guard state == .open else { return .none }
        return closeWith(AMQPError(.notAllowed, "New secret was refused by one of the backends", classID: 10, methodID: 70))
    }

    public mutating func virtualHostRefused(_ error: AMQPError) -> Action {
        guard state == .openingVirtualHost else { return .none }
        return closeWith(error)
    }

    /// The server closes the connection: a hard error, or a shutdown.
    public mutating func closeRequested(_ error: AMQPError) -> Action {
        switch state {
        case .awaitingProtocolHeader:
            state = .closed
            return .disconnect
        case .closing, .closed:
            return .none
        default:
            return closeWith(error)
        }
    }

    /// The peer went away, or a timer gave up on it.
    public mutating func transportClosed() {
        state = .closed
    }

    private mutating func closeWith(_ error: AMQPError) -> Action {
        if state == .closing || state == .closed { return .none }
        state = .closing
        return .close(error)
    }
}
