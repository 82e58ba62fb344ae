import AMQPServer
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import WarrenCore
import WarrenManagement

/// Hummingbird's request context with the peer's address (the API lets `guest` in from
/// loopback only, as for AMQP).
struct PeerRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let remoteAddress: SocketAddress?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }

    var peerIsLoopback: Bool { AMQPListener.peerInfo(remoteAddress).isLoopback }
}

/// A small HTTP server on its own port: Hummingbird serves, `answer` decides. Used for the
/// management API and for the Prometheus endpoint.
enum HTTPShell {
    static func application(
        name: String, host: String, port: Int, maxBodySize: Int, logger: Logger,
        onListening: @escaping @Sendable (SocketAddress) -> Void,
        answer: @escaping @Sendable (ManagementRequest) async throws -> ManagementResponse
    ) -> some Service {
        let responder = CallbackResponder { (request: Request, context: PeerRequestContext) -> Response in
            var query: [String: String] = [:]
            for (k, v) in request.uri.queryParameters { query[String(k)] = String(v) }
            let body: ByteBuffer
            do {
                body = try await request.body.collect(upTo: maxBodySize)
            } catch is NIOTooManyBytesError {
                // RabbitMQ 3.10 answers 400 with this reason; 413 is HTTP's word for it.
                logger.warning("\(name): request body over \(maxBodySize) bytes refused", metadata: ["path": "\(request.uri.path)"])
                let reason = "Exceeded HTTP request body size limit of \(maxBodySize) bytes (raise it with --management-max-body-size)"
                var headers = HTTPFields()
                headers[.contentType] = "application/json"
                headers[.connection] = "close"
                let json = #"{"error":"payload_too_large","reason":"\#(reason)"}"#
                return Response(status: .contentTooLarge, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: json)))
            }
            let req = ManagementRequest(
                method: request.method.rawValue, path: request.uri.path, query: query,
                authorization: request.headers[.authorization], body: Array(buffer: body),
                peerIsLoopback: context.peerIsLoopback, reason: request.headers[HTTPField.Name("X-Reason")!])
            let r = try await answer(req)
            var headers = HTTPFields()
            headers[.contentType] = r.contentType
            for (k, v) in r.headers { if let n = HTTPField.Name(k) { headers[n] = v } }
            return Response(
                status: HTTPResponse.Status(code: r.status), headers: headers,
                body: r.body.isEmpty ? ResponseBody() : ResponseBody(byteBuffer: ByteBuffer(bytes: r.body)))
        }
        var httpLogger = logger
        httpLogger[metadataKey: "subsystem"] = "\(name)"
        // Hummingbird logs each request at debug; the node's level decides.
        let app = Application(
            responder: responder,
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "Warren"),
            onServerRunning: { channel in
                let address = channel.localAddress
                logger.notice("\(name) listener started on \(address?.ipAddress ?? host):\(address?.port ?? port)")
                if let address { onListening(address) }
            },
            eventLoopGroupProvider: .singleton,
            logger: httpLogger)
        return Listening(inner: app, what: "\(name) listener on \(host):\(port)", flag: "--\(name)-port")
    }
}

/// A listener that says which one could not start (a port already taken is the usual case:
/// a RabbitMQ on the same machine holds 15672 and 15692).
struct Listening<S: Service>: Service {
    let inner: S
    let what: String
    let flag: String

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    func run() async throws {
        do {
            try await inner.run()
        } catch let e as IOError {
            throw Failure(description: "cannot start the \(what): \(e.description); choose another port with \(flag) (0 picks a free one) or turn it off")
        }
    }
}
