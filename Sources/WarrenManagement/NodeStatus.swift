/// What the API reports about the node itself that the broker core does not know: process,
/// memory, disk, file descriptors, listeners. The node shell measures it for each request.
public struct NodeStatus: Sendable {
    public struct Listener: Sendable {
        public var protocolName: String
        public var ip: String
        public var port: Int
        public init(protocolName: String, ip: String, port: Int) {
            self.protocolName = protocolName
            self.ip = ip
            self.port = port
        }
    }

    public var name: String
    public var pid: Int32 = 0
    public var uptimeMilliseconds: Int64 = 0
    public var memoryUsed: Int = 0
    public var memoryLimit: Int = 0
    public var diskFree: Int = 0
    public var diskFreeLimit: Int = 0
    public var fdUsed: Int = 0
    public var fdTotal: Int = 0
    public var processors: Int = 1
    public var listeners: [Listener] = []
    public var managementPort: Int = 0

    public init(name: String) { self.name = name }
}
