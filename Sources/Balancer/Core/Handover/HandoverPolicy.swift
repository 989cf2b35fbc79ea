import VRRPCore

/// Whether a running penha may hand over to a new process, decided from values only: the
/// old process answers a refused request with this reason and serves on.
public enum HandoverPolicy {
    /// nil when the handover may go on. `requester`: the user of the process that asked (the
    /// control socket's SO_PEERCRED), `own`: this process's effective user; root may take over
    /// too (it could do anything to this process anyway), which `penha upgrade` of a penha
    /// that dropped root with `-u` needs: only root can take the user's ids again. A vrrp instance's
    /// second chance moves when no window is open (`openWindows` empty): it then has nothing
    /// in the kernel, and the new process resumes it ready for the next transition.
    public static func refusal(for configuration: Configuration, draining: Bool, openWindows: [OpenSecondChanceWindow] = [],
                               requester: UInt32, own: UInt32) -> String? {
        if requester != own, requester != 0 { return "only root or penha's own user (uid \(own)) may take over, not uid \(requester)" }
        if draining { return "penha is stopping" }
        if configuration.udp { return "UDP (-U) flows do not move to another process" }
        if let open = openWindows.first {
            let end = open.secondsLeft.map { "in \($0) s" } ?? "when penha's drain ends"
            return "the second_chance window of vrrp vrid \(open.vrid) on \(open.interface) is open (its redirect or its VIPs on lo "
                + "are in place); it closes \(end): retry then"
        }
        return nil
    }

    /// The request line's socket path: after `HandoverMessage.requestLine` and one space, an
    /// absolute path of at most 107 bytes (sun_path); nil for any other line.
    public static func requestedPath(_ line: String) -> String? {
        let prefix = HandoverMessage.requestLine + " "
        guard line.hasPrefix(prefix) else { return nil }
        let path = String(line.dropFirst(prefix.count))
        guard path.hasPrefix("/"), path.utf8.count <= 107, !path.utf8.contains(0), !path.contains("\n") else { return nil }
        return path
    }

    /// Whether a control line is a handover request at all (well formed or not): such a line
    /// never reaches the command parser.
    public static func isRequest(_ line: String) -> Bool {
        line.hasPrefix(HandoverMessage.requestKeyword)
    }
}
