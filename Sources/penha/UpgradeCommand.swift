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

    /// The new process says it has taken over on this descriptor (`Takeover.signalUpgrade`).
    static let readyVariable = "PENHA_UPGRADE_READY_FD"
    static let readyFD: Int32 = 3
    /// How long the new process may take: its takeover's waits (5 s a frame) and its start.
    static let startSeconds: Int32 = 30
    /// How long the old process may take to exit after the handover.
    static let exitSeconds = 5

    static var spec: CommandSpec<Self> {
        CommandSpec(
            name: "upgrade", abstract: "Replace the running penha with the binary on disk, keeping its connections.",
            defaults: Self(),
            options: [.value("-C", valueName: "socket", help: "The running penha's control socket (default \(Endpoint.defaultControlPath)).",
                             \.control),
                      .value("--binary", valueName: "path", help: "The binary to start (default: the one the running penha was "
                                 + "started as).", \.binary)])
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
        let new = try spawn(binary ?? executable, Self.takeoverArguments(arguments, socket: socketPath))
        guard new.ready else {
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

    /// The running penha's arguments for the new process: `run`, `-f` (this command detaches
    /// it; its log goes where this command's stderr goes) and `--takeover SOCKET` added, an
    /// earlier `--takeover` dropped.
    static func takeoverArguments(_ arguments: [String], socket: String) -> [String] {
        var words = arguments.first == "run" ? Array(arguments.dropFirst()) : arguments
        if let index = words.firstIndex(of: "--takeover"), index + 1 < words.count { words.removeSubrange(index...index + 1) }
        return ["run", "--takeover", socket] + (words.contains("-f") ? [] : ["-f"]) + words
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

    /// Starts the new process in a session of its own (it outlives this command), stdin and
    /// stdout on /dev/null, stderr this command's; waits at most `startSeconds` for it to say
    /// it took over, or to exit.
    private func spawn(_ executable: String, _ arguments: [String]) throws -> (pid: Int32, ready: Bool) {
        var ready: [Int32] = [-1, -1]
        guard pipe(&ready) == 0 else { throw RuntimeFailure(description: "cannot make a pipe: \(SystemErrorText.describe(errno: errno))") }
        Daemon.closeAllOnExec()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, ready[1], Self.readyFD)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Daemon.spawnSetSID)
        let environment = Environment.variables.filter { !$0.hasPrefix("\(Self.readyVariable)=") } + ["\(Self.readyVariable)=\(Self.readyFD)"]
        var child: pid_t = 0
        let spawned = Daemon.withCStrings([executable] + arguments) { argv in
            Daemon.withCStrings(environment) { envp in posix_spawn(&child, executable, &actions, &attributes, argv, envp) }
        }
        close(ready[1])
        defer { close(ready[0]) }
        guard spawned == 0 else { throw RuntimeFailure(description: "cannot start \(executable): \(SystemErrorText.describe(errno: spawned))") }
        var waiting = pollfd(fd: ready[0], events: Int16(POLLIN), revents: 0)
        var verdict: UInt8 = 0
        if poll(&waiting, 1, Self.startSeconds * 1000) == 1, Glibc.read(ready[0], &verdict, 1) == 1 { return (child, true) }
        // Failed, or too slow: it must not take over later, unseen.
        kill(child, SIGTERM)
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        return (child, false)
    }
}
