import Balancer
import BalancerCore

#if canImport(Glibc)
import Glibc
#endif

/// pen's default of running in the background, without fork in a process that may have
/// threads: penha starts itself again with `-f` in a new session (setsid), stdin and stdout
/// on /dev/null and stderr on a pipe. The first penha relays what the second says until it
/// is ready (listening, control socket open, pid file written) or has failed, then exits
/// with that verdict, so start-up errors are still seen by whoever started it.
enum Daemon {
    /// The environment variable that tells the second penha which descriptor to report
    /// readiness on.
    static let readyVariable = "PENHA_READY_FD"
    static let readyFD: Int32 = 3
    /// glibc's POSIX_SPAWN_SETSID (2.26 and later), which its header shows only to _GNU_SOURCE.
    static let spawnSetSID: Int16 = 0x80

    /// Starts the detached penha and exits with its verdict.
    static func start(arguments: [String]) -> Never {
        var output: [Int32] = [-1, -1]
        var ready: [Int32] = [-1, -1]
        guard pipe(&output) == 0, pipe(&ready) == 0 else { fail("cannot make a pipe: \(SystemErrorText.describe(errno: errno))") }
        // Only 0-3 go to the detached penha: an inherited descriptor (whoever started this
        // penha may have leaked one, such as its end of our stderr) would outlive us there.
        closeAllOnExec()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 2)
        posix_spawn_file_actions_adddup2(&actions, ready[1], readyFD)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        posix_spawnattr_setflags(&attributes, spawnSetSID)
        let environment = Environment.variables + ["\(readyVariable)=\(readyFD)"]
        // Our own argv[0], and the binary by its own name: the kernel names a process after
        // the file it executes, so spawning /proc/self/exe would show as `exe` in ps and ss.
        let argv = [CommandLine.arguments.first ?? "penha"] + foregroundArguments(arguments)
        var child: pid_t = 0
        let spawned = withCStrings(argv) { argv in
            withCStrings(environment) { envp in posix_spawn(&child, ownExecutable, &actions, &attributes, argv, envp) }
        }
        close(output[1])
        close(ready[1])
        guard spawned == 0 else { fail("cannot start in the background: \(SystemErrorText.describe(errno: spawned))") }
        // Relay until the child closes its end: it does when ready, or by exiting.
        var chunk = [UInt8](repeating: 0, count: 4096)
        while case let count = read(output[0], &chunk, chunk.count), count != 0 {
            if count < 0 { if errno == EINTR { continue } else { break } }
            _ = write(2, chunk, count)
        }
        var verdict: UInt8 = 0
        if read(ready[0], &verdict, 1) == 1 { exit(0) }
        var status: Int32 = 0
        while waitpid(child, &status, 0) < 0 && errno == EINTR {}
        // WIFEXITED / WEXITSTATUS, which Swift does not import as macros.
        exit(status & 0x7F == 0 ? (status >> 8) & 0xFF : 1)
    }

    /// Whether this is the detached penha, whose stderr goes nowhere once it is ready.
    static var isDetached: Bool { Environment.variables.contains("\(readyVariable)=\(readyFD)") }

    /// In the detached penha: says it is ready and sends stderr to /dev/null, so the first
    /// penha sees end of file and exits 0. Does nothing in a penha started with `-f`.
    static func signalReady() {
        guard isDetached else { return }
        var verdict: UInt8 = 1
        _ = write(readyFD, &verdict, 1)
        close(readyFD)
        let null = open("/dev/null", O_WRONLY)
        if null >= 0 {
            dup2(null, 2)
            close(null)
        }
    }

    /// This binary's path; /proc/self/exe itself when the file is gone (replaced by an
    /// upgrade), which still runs the same binary.
    private static var ownExecutable: String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return "/proc/self/exe" }
        let path = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return path.hasSuffix(" (deleted)") || access(path, X_OK) != 0 ? "/proc/self/exe" : path
    }

    /// Marks every descriptor above stderr close-on-exec (dup2 in the spawn's file actions
    /// makes fresh, inheritable copies of the two it passes on).
    static func closeAllOnExec() {
        guard let directory = opendir("/proc/self/fd") else { return }
        defer { closedir(directory) }
        let own = dirfd(directory)
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let fd = Int32(name), fd > 2, fd != own { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        }
    }

    /// `-f` goes after the subcommand when it is named, else first.
    private static func foregroundArguments(_ arguments: [String]) -> [String] {
        if let first = arguments.first, ["run", "logd"].contains(first) { return [first, "-f"] + arguments.dropFirst() }
        return ["-f"] + arguments
    }

    private static func fail(_ message: String) -> Never {
        writeToStandardError("penha: \(message)")
        exit(1)
    }

    static func withCStrings<Result>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> Result) -> Result {
        let pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) } + [nil]
        defer { pointers.forEach { free($0) } }
        return body(pointers)
    }
}

/// The process environment as `NAME=value` strings, read without Foundation.
enum Environment {
    static var variables: [String] {
        var result: [String] = []
        var entry = environ
        while let pointer = entry.pointee {
            result.append(String(cString: pointer))
            entry += 1
        }
        return result
    }
}
