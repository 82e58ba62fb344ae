import Foundation
import Synchronization
#if canImport(Glibc)
    import Glibc
#endif

/// The node's data directory, created if missing and locked for the life of the process so two
/// nodes never share one.
public final class DataDirectory: Sendable {
    public let path: String
    /// The locked `.lock` file; nil once released.
    private let lockFD: Mutex<Int32?>

    public struct Error: Swift.Error, CustomStringConvertible {
        public let description: String
    }

    public init(path: String) throws {
        self.path = path
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw Error(description: "cannot create data directory '\(path)': \(error.localizedDescription)")
        }
        let lockPath = (path as NSString).appendingPathComponent(".lock")
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Error(description: "cannot open '\(lockPath)': \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw Error(description: "data directory '\(path)' is in use by another Warren node")
        }
        let pid = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = pid.withCString { write(fd, $0, strlen($0)) }
        self.lockFD = Mutex(fd)
    }

    /// Lets another node (or this one, restarted in the same process) take the directory. Called
    /// at the end of a shutdown, so a closure somewhere that still holds the node does not keep
    /// the directory locked.
    public func release() {
        lockFD.withLock { fd in
            guard let f = fd else { return }
            flock(f, LOCK_UN)
            close(f)
            fd = nil
        }
    }

    deinit { release() }
}
