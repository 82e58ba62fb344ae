public import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A log's one thread for blocking IO: fdatasync of its segments (group commit) and atomic file
/// writes (the store's manifest, Raft snapshots). The event loop writes records itself (a write
/// to the page cache is quick); only the waits for the disk happen here, so the loop keeps
/// serving meanwhile.
///
/// Sync requests that arrive while a sync runs are merged into the next one: however many
/// channels wait, each round costs one fdatasync per dirty segment.
public final class SyncWorker: @unchecked Sendable {
    public enum Job: Sendable {
        /// fdatasync each of `fds`, then fsync each of `directories` (new segment names).
        case sync(position: UInt64, fds: Set<Int32>, directories: [String])
        /// Sync `fds` and `directories`, then write what `contents` makes to `path` atomically
        /// (temp file, fsync, rename, fsync of the directory). `contents` runs here, on this
        /// thread: encoding a manifest of 100,000 durable queues takes long enough to stall an
        /// event loop. `tag` tells the owner which write finished.
        case write(path: String, contents: @Sendable () -> Data, fds: Set<Int32>, directories: [String], position: UInt64, tag: Int)
    }

    /// Called on the worker thread when a job finished; the store hops back to its loop.
    private let completed: @Sendable (Job, StoreError?) -> Void
    private let condition = NSCondition()
    private var pendingSync: (position: UInt64, fds: Set<Int32>, directories: [String])?
    private var jobs: [Job] = []
    private var stopping = false
    private var thread: Thread?
    private let finishedRunning = DispatchSemaphore(value: 0)

    public init(completed: @escaping @Sendable (Job, StoreError?) -> Void) {
        self.completed = completed
        // The thread holds the worker until stop() ends it.
        let t = Thread { self.run() }
        t.name = "warren-store-sync"
        thread = t
        t.start()
    }

    public func requestSync(upTo position: UInt64, fds: Set<Int32>, directories: [String] = []) {
        condition.lock()
        if let p = pendingSync {
            pendingSync = (max(p.position, position), p.fds.union(fds), Array(Set(p.directories + directories)))
        } else {
            pendingSync = (position, fds, directories)
        }
        condition.signal()
        condition.unlock()
    }

    public func enqueue(_ job: Job) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Finishes queued work, then ends the thread.
    public func stop() {
        condition.lock()
        stopping = true
        condition.signal()
        condition.unlock()
        finishedRunning.wait()
    }

    private func run() {
        while true {
            condition.lock()
            while pendingSync == nil && jobs.isEmpty && !stopping { condition.wait() }
            if pendingSync == nil && jobs.isEmpty && stopping {
                thread = nil
                condition.unlock()
                finishedRunning.signal()
                return
            }
            // A pending sync goes first: manifests are written after the log they describe.
            let job: Job
            if let p = pendingSync {
                pendingSync = nil
                job = .sync(position: p.position, fds: p.fds, directories: p.directories)
            } else {
                job = jobs.removeFirst()
            }
            condition.unlock()
            completed(job, perform(job))
        }
    }

    private func perform(_ job: Job) -> StoreError? {
        switch job {
        case .sync(_, let fds, let directories):
            return Self.sync(fds, directories)
        case .write(let path, let contents, let fds, let directories, _, _):
            if let e = Self.sync(fds, directories) { return e }
            return Self.writeAtomically(contents(), to: path)
        }
    }

    private static func sync(_ fds: Set<Int32>, _ directories: [String]) -> StoreError? {
        for fd in fds where fdatasync(fd) != 0 { return StoreError("fdatasync failed: \(String(cString: strerror(errno)))") }
        for d in directories {
            do throws(StoreError) {
                try syncDirectory(d)
            } catch {
                return error
            }
        }
        return nil
    }

    public static func writeAtomically(_ data: Data, to path: String) -> StoreError? {
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return .io("cannot create", tmp) }
        let ok = data.withUnsafeBytes { raw -> Bool in
            var written = 0
            while written < raw.count {
                let n = write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                written += n
            }
            return true
        }
        guard ok, fsync(fd) == 0 else {
            let e = StoreError.io("cannot write", tmp)
            close(fd)
            return e
        }
        close(fd)
        guard rename(tmp, path) == 0 else { return .io("cannot rename to", path) }
        do throws(StoreError) {
            try syncDirectory((path as NSString).deletingLastPathComponent)
        } catch {
            return error
        }
        return nil
    }
}
