import Balancer
import BalancerCore
import Engine
import Logging
import NIOCore
import VRRPCore

#if canImport(Glibc)
import Glibc
#endif

/// The new process's side of a handover (`penha run --takeover SOCKET`): it asks the running
/// penha on its control socket, takes its listener before binding anything, then its
/// connections once its own engine runs. Every wait is bounded; a failure exits this process
/// with the reason, and the old one serves on.
final class Takeover {
    /// The old process's answer, read once everything moved: its own waits come first.
    static let answerTimeout = 30
    private let control: Int32
    private let socket: HandoverSocket
    private var reception = HandoverReception()
    /// The old process's pid (SO_PEERCRED of its connection to us).
    let oldProcess: Int32
    /// The listening socket the old process sent.
    let listener: Int32

    /// Asks the penha on `controlPath` to hand over and takes its listener. `oldUser`: the
    /// user the old process must run as (`oldProcessUser`).
    init(controlPath: String, oldUser: uid_t) throws {
        // Beside the control socket, by an absolute path: the old process may work elsewhere.
        let absolute = controlPath.hasPrefix("/") ? controlPath : "\(Self.workingDirectory)/\(controlPath)"
        let directory = absolute[..<(absolute.lastIndex(of: "/") ?? absolute.startIndex)]
        let path = "\(directory)/.penha-handover-\(getpid())"
        unlink(path)
        let listening = try HandoverSocket.listen(at: path, connectableBy: oldUser)
        defer {
            close(listening)
            unlink(path)
        }
        let control = try Self.connectControl(controlPath)
        self.control = control
        do {
            let request = Array("\(HandoverMessage.requestLine) \(path)\n".utf8)
            guard request.withUnsafeBytes({ send(control, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
                throw HandoverFailure("cannot send the request on \(controlPath): \(SystemErrorText.describe(errno: errno))")
            }
            // The old process connects, or refuses at once and answers why.
            var ready = [pollfd(fd: listening, events: Int16(POLLIN), revents: 0), pollfd(fd: control, events: Int16(POLLIN), revents: 0)]
            let seconds = Int32(HandoverSocket.timeout.components.seconds)
            guard poll(&ready, 2, seconds * 1000) > 0 else { throw HandoverFailure("the old process did not connect within \(seconds) s") }
            guard ready[0].revents & Int16(POLLIN) != 0 else {
                throw HandoverFailure(Self.answer(control, within: 1) ?? "the old process closed its control connection")
            }
            socket = try HandoverSocket.accept(listening)
            let peer = try socket.peer
            guard peer.uid == oldUser else { throw HandoverFailure("the process that connected is of uid \(peer.uid), not penha's own (\(oldUser))") }
            // Any process of that user may connect first: only the one serving the control socket gives the listener.
            let penha = try HandoverSocket.peer(of: control)
            guard peer.pid == penha.pid else {
                throw HandoverFailure("the process that connected (pid \(peer.pid)) is not the penha on \(controlPath) (pid \(penha.pid))")
            }
            oldProcess = peer.pid
            let (message, descriptors) = try socket.receive()
            guard case .adoptListener = try reception.receive(message), let descriptor = descriptors.first else {
                throw HandoverError.unexpected("\(message.name) where the listener was due")
            }
            listener = descriptor
        } catch {
            close(control)
            throw error
        }
    }

    deinit {
        close(control)
    }

    /// Once this process accepts on the listener: the client table, the connections (relayed
    /// by `service` as they come) and the counters; then the VRRP instances and the old
    /// process's answer. Returns them.
    func adoptConnections(into service: BalancerService) throws -> (answer: String, vrrp: [VRRPResumption]) {
        try socket.send(.accepting)
        var adopted = 0
        while !reception.isAdopted {
            let (message, descriptors) = try socket.receive()
            let step: HandoverReception.Step
            do {
                step = try reception.receive(message)
            } catch {
                for descriptor in descriptors { close(descriptor) }
                throw error
            }
            switch step {
            case .adoptConnections(let records):
                var pairs = descriptors[...]
                let captured = records.map { record in
                    defer { pairs = pairs.dropFirst(2) }
                    return CapturedConnection(record: record, client: pairs[pairs.startIndex], server: pairs[pairs.startIndex + 1])
                }
                service.adopt(captured)
                adopted += captured.count
            case .restoreClients(let clients):
                service.restore(clients)
            case .addCounters(let counters):
                service.add(counters)
            case .holdBGPWithdrawn:
                service.holdBGPWithdrawn()
            case .adoptListener, .adopted, .resumeVRRP:
                break
            }
        }
        try socket.send(.adopted)
        // Everything the announcer decides from is here now (the operator's hold included).
        try? service.startAnnouncing().wait()
        let vrrp = resumedVRRP()
        return (Self.answer(control, within: Self.answerTimeout) ?? "handed over \(adopted) connections (the old process did not answer)", vrrp)
    }

    /// The old process's VRRP instances, where they stood when it stopped them; none when it
    /// does not say (its instances then start afresh here, as at a restart).
    private func resumedVRRP() -> [VRRPResumption] {
        guard let (message, descriptors) = try? socket.receive() else { return [] }
        for descriptor in descriptors { close(descriptor) }
        guard case .resumeVRRP(let instances)? = try? reception.receive(message) else { return [] }
        return instances
    }

    /// The user the old process runs as: this process's own, or with `-u` that user's. With
    /// `-u` or `-j` only root can take over: it confines itself once everything has moved,
    /// which a successor that a confined penha started on SIGUSR2 could not; it says so
    /// before asking (the control socket, root's, would refuse it only as "permission denied").
    static func oldProcessUser(runAs user: String?, chroot: String?) throws -> uid_t {
        guard user != nil || chroot != nil else { return geteuid() }
        guard geteuid() == 0 else {
            throw HandoverFailure("a penha with -u or -j is taken over by root only (it gives up root after): run penha upgrade as root")
        }
        guard let user else { return 0 }
        guard let entry = getpwnam(user) else { throw HandoverFailure("-u: no user '\(user)'") }
        return entry.pointee.pw_uid
    }

    private static var workingDirectory: String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        guard getcwd(&buffer, buffer.count) != nil else { return "." }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A blocking connection to the old process's control socket.
    private static func connectControl(_ path: String) throws -> Int32 {
        let address = try SocketAddress(unixDomainSocketPath: path)
        let descriptor = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw HandoverFailure("socket: \(SystemErrorText.describe(errno: errno))") }
        guard address.withSockAddr({ connect(descriptor, $0, socklen_t($1)) }) == 0 else {
            let failure = HandoverFailure("no penha answers on \(path): \(SystemErrorText.describe(errno: errno))")
            close(descriptor)
            throw failure
        }
        return descriptor
    }

    /// The control socket's answer (up to its close), within `seconds`; nil for none.
    private static func answer(_ control: Int32, within seconds: Int) -> String? {
        var time = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(control, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        // Bounded: the answer is a few lines, and each read waits at most `seconds`.
        while bytes.count < 65536 {
            let count = chunk.withUnsafeMutableBytes { recv(control, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            bytes += chunk.prefix(count)
        }
        while bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
    }
}
