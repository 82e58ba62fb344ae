import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import WarrenCore
import WarrenFederation

extension WarrenNode {
    /// Starts the federation supervisor once the plain AMQP listener is up (links publish into
    /// this node through it, over loopback). A listener that restarts (stop_app / start_app)
    /// keeps the supervisor it had.
    func startFederation(localPort: Int) {
        let broker = self.broker
        let linkLoop = federationGroup.next()
        var log = logger
        log[metadataKey: "subsystem"] = "federation"
        let box = federation
        guard box.withLockedValue({ $0 == nil }) else { return }
        broker.eventLoop.execute { [log] in
            let s = FederationSupervisor(broker: broker.value, brokerLoop: broker.eventLoop, linkLoop: linkLoop, localPort: localPort, logger: log)
            let bound = NIOLoopBound(s, eventLoop: broker.eventLoop)
            let first = box.withLockedValue { current -> Bool in
                guard current == nil else { return false }
                current = bound
                return true
            }
            if first { s.start() }
        }
    }
}
