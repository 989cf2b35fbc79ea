import Balancer
import BalancerCore
import CProcess
import Logging
import Synchronization
import VRRP

#if canImport(Glibc)
import Glibc
#endif

/// The process that takes over from a running penha (`penha upgrade`, SIGUSR2): the binary on
/// disk started with the running one's arguments plus `--takeover SOCKET`, in a session of its
/// own, stdin and stdout on /dev/null, stderr the starter's; it says on a pipe once it has
/// taken over.
enum Successor {
    /// The descriptor the new process says it has taken over on (not 3: a detached penha's
    /// own readiness descriptor, `Daemon.readyFD`, keeps its meaning).
    static let readyVariable = "PENHA_UPGRADE_READY_FD"
    static let readyFD: Int32 = 4
    /// How long the new process may take: its takeover's waits (5 s a frame) and its start.
    static let startSeconds: Int32 = 30

    /// The running penha's arguments for the new process: `run`, `--takeover SOCKET` and `-f`
    /// (its starter detaches it; its log goes where the starter's stderr goes), an earlier
    /// `--takeover` dropped.
    static func arguments(_ arguments: [String], socket: String) -> [String] {
        var words = arguments.first == "run" ? Array(arguments.dropFirst()) : arguments
        if let index = words.firstIndex(of: "--takeover"), index + 1 < words.count { words.removeSubrange(index...index + 1) }
        return ["run", "--takeover", socket] + (words.contains("-f") ? [] : ["-f"]) + words
    }

    /// The environment for the new process: systemd's watchdog is its own once it is the main
    /// process, so the old one's WATCHDOG_PID goes (`SystemdNotifier` then takes WATCHDOG_USEC).
    static func environment(_ variables: [String]) -> [String] {
        variables.filter { !$0.hasPrefix("\(readyVariable)=") && !$0.hasPrefix("WATCHDOG_PID=") } + ["\(readyVariable)=\(readyFD)"]
    }

    /// Starts it (a bare name is looked up in PATH, as a shell would) and waits at most
    /// `startSeconds` for it to say it took over; one that does not is stopped. It is started
    /// as an orphan (`penha_spawn_orphan`): systemd takes a MAINPID= that is not its child as
    /// alien (before version 254), does not wait for it at stop and SIGKILLs the unit at once.
    static func start(_ executable: String, _ arguments: [String]) throws -> (pid: Int32, tookOver: Bool) {
        let path = try resolve(executable)
        var ready: [Int32] = [-1, -1]
        guard pipe(&ready) == 0 else {
            throw RuntimeFailure(description: "cannot make a pipe: \(SystemErrorText.describe(errno: errno))")
        }
        defer { close(ready[0]) }
        // Only 0-2 and the pipe go to the new process: a running penha's sockets are its own.
        Daemon.closeAllOnExec()
        let child = Daemon.withCStrings([executable] + arguments) { argv in
            Daemon.withCStrings(environment(Environment.variables)) { envp in
                penha_spawn_orphan(path, argv, envp, ready[1], readyFD)
            }
        }
        let spawnError = errno
        close(ready[1])
        guard child > 0 else {
            throw RuntimeFailure(description: "cannot start \(executable): \(SystemErrorText.describe(errno: spawnError))")
        }
        var waiting = pollfd(fd: ready[0], events: Int16(POLLIN), revents: 0)
        var verdict: UInt8 = 0
        if poll(&waiting, 1, startSeconds * 1000) == 1, read(ready[0], &verdict, 1) == 1 { return (child, true) }
        // Failed (an exec that failed closed the pipe), or too slow: it must not take over
        // later, unseen. Not this process's child: init reaps it.
        kill(child, SIGTERM)
        return (child, false)
    }

    /// `executable` as a path: a bare name looked up in PATH, as a shell would.
    private static func resolve(_ executable: String) throws -> String {
        if executable.contains("/") { return executable }
        let directories = (Environment.dictionary["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(separator: ":")
        for directory in directories where access("\(directory)/\(executable)", X_OK) == 0 {
            return "\(directory)/\(executable)"
        }
        throw RuntimeFailure(description: "cannot start \(executable): not found in PATH")
    }

    /// In the new process, once it has taken over: tells its starter (nothing when it was
    /// started otherwise).
    static func signalTookOver() {
        guard Environment.variables.contains("\(readyVariable)=\(readyFD)") else { return }
        var verdict: UInt8 = 1
        _ = write(readyFD, &verdict, 1)
        close(readyFD)
    }
}

/// SIGUSR2: the running penha starts its successor itself, the binary it was started as (on
/// disk now: after a package upgrade, the new one). Under systemd the successor is then in
/// the unit's control group, so systemd takes it as the main process once this one says
/// MAINPID= (`penha upgrade`, run from outside the unit, would start it elsewhere).
final class SignalledUpgrade: Sendable {
    private let running = Atomic<Bool>(false)
    private let logger: Logger

    init(logger: Logger) {
        self.logger = logger
    }

    /// Returns at once; one upgrade at a time. `socket`: this penha's Unix control socket.
    func request(socket: String?) {
        let logger = logger
        guard let socket else { return logger.error("SIGUSR2 ignored: an upgrade needs a Unix control socket (-C)") }
        guard running.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged else {
            return logger.notice("SIGUSR2 ignored: an upgrade is in progress")
        }
        let executable = CommandLine.arguments.first ?? "penha"
        let arguments = Successor.arguments(Array(CommandLine.arguments.dropFirst()), socket: socket)
        let upgrade = {
            defer { self.running.store(false, ordering: .relaxed) }
            logger.notice("SIGUSR2: starting \(executable) to take over")
            do {
                let new = try Successor.start(executable, arguments)
                if !new.tookOver {
                    logger.error("upgrade failed: pid \(new.pid) did not take over within \(Successor.startSeconds) s; serving on")
                }
            } catch {
                logger.error("upgrade failed: \(error); serving on")
            }
        }
        // A thread only while the upgrade runs (not libdispatch: its workers would take the signals).
        do {
            pthread_detach(try startThread(upgrade))
        } catch {
            running.store(false, ordering: .relaxed)
            logger.error("upgrade failed: \(error); serving on")
        }
    }
}
