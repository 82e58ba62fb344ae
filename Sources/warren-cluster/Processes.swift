import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// Starting and signalling the processes the driver owns. Each verb is a process of its own
/// that exits, so nodes and the proxy are started in a session of their own (they outlive the
/// verb and a Ctrl-C of the shell that ran it) and are found again by pid.
enum Processes {
    /// Starts `argv` detached, stdout and stderr appended to `log`, with `env` added to the
    /// driver's environment.
    static func spawn(_ argv: [String], log: String, env: [String: String] = [:]) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // A new session: no controlling terminal, no signals meant for the shell's job.
        posix_spawnattr_setflags(&attr, 0x80)  // POSIX_SPAWN_SETSID (glibc 2.26+), not imported into Swift
        var pid: pid_t = 0
        // A preloaded libfaketime that starts in the node itself sets a variable in its
        // environment, which moves `environ` and leaves a Swift program's CommandLine.arguments
        // empty (it finds argv next to the environment): the node came up with no flags, on the
        // default ports. Started from /usr/bin/env, the library starts there first, sets it
        // there, and the node (the same pid, exec'd) finds its arguments.
        let argv = env["LD_PRELOAD"] == nil ? argv : ["/usr/bin/env"] + argv
        let cargs = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var environment = ProcessInfo.processInfo.environment
        environment.merge(env) { $1 }
        let cenv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in cenv { free(p) } }
        let rc = posix_spawn(&pid, argv[0], &actions, &attr, cargs, cenv)
        guard rc == 0 else { throw DriverError("cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// Alive and not a zombie (a node whose parent verb exited is reaped by init, which some
    /// containers' init never does).
    static func alive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        // "pid (comm) S ...": the state follows the last ')'.
        guard let close = stat.lastIndex(of: ")") else { return true }
        let rest = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces)
        return !rest.hasPrefix("Z") && !rest.hasPrefix("X")
    }

    /// The pid is still the program we started (not a pid reused by something else).
    static func runs(_ pid: pid_t, program: String) -> Bool {
        guard alive(pid) else { return false }
        guard let exe = readLink("/proc/\(pid)/exe") else { return true }
        return (exe as NSString).lastPathComponent.hasPrefix((program as NSString).lastPathComponent)
    }

    /// A symbolic link's target, read with readlink(2) (Foundation's reading of /proc links is
    /// not reliable: they report a size of 0).
    static func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buf, buf.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Waits (polling, bounded) until `pid` has exited; false if it still runs after `timeout`.
    static func waitExit(_ pid: pid_t, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while alive(pid) {
            var status: Int32 = 0
            _ = waitpid(pid, &status, WNOHANG)  // our own child (started by this verb)
            if Date() >= deadline { return false }
            usleep(20_000)
        }
        return true
    }

    /// Runs a helper program to completion (openssl); its output goes to `log`.
    static func run(_ argv: [String], log: String) throws {
        let pid = try spawn(argv, log: log)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        guard status == 0 else { throw DriverError("\(argv.joined(separator: " ")) failed (status \(status)); see \(log)") }
    }

    /// Finds `name` on PATH.
    static func which(_ name: String) -> String? {
        for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let p = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }

    /// A port nobody listens on now, outside the kernel's ephemeral range: the nodes bind it a
    /// moment later (the driver wants fixed ports, so a restarted node keeps them), and a port
    /// from the ephemeral range could meanwhile become the local end of some outgoing
    /// connection (the nodes' own links do that), which a bind(0)-and-release pick invites.
    static func freePort() throws -> Int {
        let (low, _) = ephemeralRange()
        let floor = 10_000
        let ceiling = max(floor + 1_000, low - 1)
        for _ in 0..<200 {
            let candidate = Int.random(in: floor...ceiling)
            if canBind(candidate) { return candidate }
        }
        throw DriverError("no free port found between \(floor) and \(ceiling) on 127.0.0.1")
    }

    /// The kernel's range for outgoing connections' local ports.
    static func ephemeralRange() -> (Int, Int) {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? "32768 60999"
        let parts = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        return parts.count == 2 ? (parts[0], parts[1]) : (32768, 60999)
    }

    static func canBind(_ port: Int) -> Bool {
        withLoopbackSocket(port) { fd, addr, len in bind(fd, addr, len) == 0 }
    }

    /// Something accepts TCP connections on 127.0.0.1:`port`.
    static func accepts(_ port: Int) -> Bool {
        withLoopbackSocket(port) { fd, addr, len in connect(fd, addr, len) == 0 }
    }

    /// A fresh TCP socket and 127.0.0.1:`port`, for one bind or connect; closed afterwards.
    private static func withLoopbackSocket(_ port: Int, _ body: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Bool) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    }
}
