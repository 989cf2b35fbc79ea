import Balancer
import BalancerCore
import NIOCore
import PenhaCommandLine

#if canImport(Glibc)
import Glibc
#endif

/// `penha upgrade [-C SOCKET] [--binary PATH]`: replaces the running penha with a new process
/// of the binary on disk (after a package upgrade, say), started with the running one's
/// arguments and working directory plus `--takeover SOCKET`; the new process takes the
/// listener and the connections, the old one exits. Exits 0 once the new process serves and
/// the old one is gone, 1 when the upgrade failed (the old process serves on; the new
/// process's reason is on stderr).
struct UpgradeCommand: Subcommand {
    var control: String?
    var binary: String?

    /// How long the old process may take to exit after the handover.
    static let exitSeconds = 5

    static var spec: CommandSpec<Self> {
        CommandSpec(
            name: "upgrade", abstract: "Replace the running penha with the binary on disk, keeping its connections.",
            defaults: Self(),
            options: [.value("-C", valueName: "socket", help: "The running penha's control socket (default \(Endpoint.defaultControlPath)).",
                             \.control),
                      .value("--binary", valueName: "path", help: "The binary to start (default: the one the running penha was "
                                 + "started as; this one for a penha of another user).", \.binary)])
    }

    func run() throws {
        let address = try ControlClient.address(control)
        guard let socket = address.socketPath else { throw ConfigurationError("penha upgrade needs a Unix control socket, not \(address)") }
        let reply: Reply
        do {
            reply = try ControlClient.send("pid", to: address)
        } catch let failure as ControlClient.Failure {
            throw RuntimeFailure(description: failure.description)
        }
        guard let old = reply.lines.first.flatMap({ Int32($0) }), old > 0 else {
            throw RuntimeFailure(description: "penha on \(socket) did not say its pid")
        }
        let (executable, arguments) = try Self.commandLine(of: old)
        let directory = try Self.workingDirectory(of: old)
        guard chdir(directory) == 0 else {
            throw RuntimeFailure(description: "cannot enter \(directory): \(SystemErrorText.describe(errno: errno))")
        }
        let socketPath = socket.hasPrefix("/") ? socket : "\(directory)/\(socket)"
        let new = try Successor.start(binary ?? Self.trusted(executable, of: old), Successor.arguments(arguments, socket: socketPath))
        guard new.tookOver else {
            throw RuntimeFailure(description: "upgrade failed, pid \(old) serves on (the new process exited: see its reason above)")
        }
        for _ in 0..<(Self.exitSeconds * 50) where Self.isRunning(old) { usleep(20_000) }
        guard !Self.isRunning(old) else {
            throw RuntimeFailure(description: "pid \(new.pid) took over, but pid \(old) has not exited (TLS connections draining?)")
        }
        print("upgraded: pid \(old) handed over to pid \(new.pid)")
    }

    /// The running penha's binary and arguments, from /proc/PID/cmdline.
    static func commandLine(of pid: Int32) throws -> (executable: String, arguments: [String]) {
        guard let bytes = read("/proc/\(pid)/cmdline"), !bytes.isEmpty else {
            throw RuntimeFailure(description: "cannot read the command line of pid \(pid)")
        }
        let words = bytes.split(separator: 0, omittingEmptySubsequences: false).dropLast().map { String(decoding: $0, as: UTF8.self) }
        guard let executable = words.first else { throw RuntimeFailure(description: "pid \(pid) has an empty command line") }
        return (executable, Array(words.dropFirst()))
    }

    /// The binary to start: the one `pid` was started as when it runs as this user; else this
    /// command's own. A process of another user (root upgrading a penha run with `-u`) can
    /// rewrite its command line, and root must not run a file that user named.
    private static func trusted(_ executable: String, of pid: Int32) throws -> String {
        var owner = stat()
        guard stat("/proc/\(pid)", &owner) == 0 else { throw RuntimeFailure(description: "pid \(pid) is gone") }
        if owner.st_uid == geteuid() { return executable }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { throw RuntimeFailure(description: "cannot read this binary's path: \(SystemErrorText.describe(errno: errno))") }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func workingDirectory(of pid: Int32) throws -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/\(pid)/cwd", &buffer, buffer.count - 1)
        guard count > 0 else { throw RuntimeFailure(description: "cannot read the working directory of pid \(pid)") }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Alive and not a zombie (a test's child that exited is one until it is waited for).
    static func isRunning(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        guard let stat = read("/proc/\(pid)/stat"), let close = stat.lastIndex(of: UInt8(ascii: ")")), close + 2 < stat.count else { return true }
        return stat[close + 2] != UInt8(ascii: "Z")
    }

    /// A small file of /proc, whole (bounded).
    private static func read(_ path: String) -> [UInt8]? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 20, case let count = Glibc.read(descriptor, &chunk, chunk.count), count > 0 { bytes += chunk.prefix(count) }
        return bytes
    }
}
