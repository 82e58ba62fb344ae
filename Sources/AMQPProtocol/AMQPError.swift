/// An AMQP error as it travels on the wire: a reply code, a reply text in RabbitMQ's style
/// (`NOT_FOUND - no queue 'x' in vhost '/'`), and the class and method that caused it.
///
/// Whether it closes the channel (soft) or the connection (hard) follows from the code, as the
/// spec's constants table classes it; a handful of codes RabbitMQ uses outside the table
/// (e.g. 320 sent by the server) are hard as well.
public struct AMQPError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: AMQPReplyCode
    /// The full reply text, starting with the code's name.
    public var text: String
    public var classID: UInt16
    public var methodID: UInt16

    @inlinable
    public init(code: AMQPReplyCode, text: String, classID: UInt16 = 0, methodID: UInt16 = 0) {
        self.code = code
        self.text = text
        self.classID = classID
        self.methodID = methodID
    }

    /// Builds an error whose text is `CODE_NAME - detail`, RabbitMQ's format.
    @inlinable
    public init(_ code: AMQPReplyCode, _ detail: String, classID: UInt16 = 0, methodID: UInt16 = 0) {
        self.init(code: code, text: "\(code.name) - \(detail)", classID: classID, methodID: methodID)
    }

    /// True when this error closes the whole connection rather than one channel.
    public var isHard: Bool { self.code.isHardError }

    /// Returns a copy that names the method that caused it, unless one is named already.
    @inlinable
    public func with(classID: UInt16, methodID: UInt16) -> AMQPError {
        var copy = self
        if copy.classID == 0 && copy.methodID == 0 {
            copy.classID = classID
            copy.methodID = methodID
        }
        return copy
    }

    public var description: String {
        if classID == 0 && methodID == 0 { return "\(code.rawValue) \(text)" }
        return "\(code.rawValue) \(text) (in \(AMQPMethod.name(classID: classID, methodID: methodID)))"
    }
}

extension AMQPError {
    public static func notFound(_ detail: String) -> AMQPError { AMQPError(.notFound, detail) }
    public static func accessRefused(_ detail: String) -> AMQPError { AMQPError(.accessRefused, detail) }
    public static func resourceLocked(_ detail: String) -> AMQPError { AMQPError(.resourceLocked, detail) }
    public static func preconditionFailed(_ detail: String) -> AMQPError { AMQPError(.preconditionFailed, detail) }
    public static func frameError(_ detail: String) -> AMQPError { AMQPError(.frameError, detail) }
    public static func syntaxError(_ detail: String) -> AMQPError { AMQPError(.syntaxError, detail) }
    public static func commandInvalid(_ detail: String) -> AMQPError { AMQPError(.commandInvalid, detail) }
    public static func channelError(_ detail: String) -> AMQPError { AMQPError(.channelError, detail) }
    public static func unexpectedFrame(_ detail: String) -> AMQPError { AMQPError(.unexpectedFrame, detail) }
    public static func resourceError(_ detail: String) -> AMQPError { AMQPError(.resourceError, detail) }
    public static func notAllowed(_ detail: String) -> AMQPError { AMQPError(.notAllowed, detail) }
    public static func internalError(_ detail: String) -> AMQPError { AMQPError(.internalError, detail) }
    public static func connectionForced(_ detail: String) -> AMQPError { AMQPError(.connectionForced, detail) }
    public static func contentTooLarge(_ detail: String) -> AMQPError { AMQPError(.contentTooLarge, detail) }

    @inlinable
    public static func notImplemented(_ detail: String, classID: UInt16 = 0, methodID: UInt16 = 0) -> AMQPError {
        AMQPError(.notImplemented, detail, classID: classID, methodID: methodID)
    }

    /// A method frame whose arguments could not be decoded.
    @inlinable
    public static func malformed(_ detail: String) -> AMQPError {
        AMQPError(.frameError, "cannot decode method arguments: \(detail)")
    }
}
