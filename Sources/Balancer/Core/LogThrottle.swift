import NIOCore

/// Lets through at most one message per `interval` for an event that a client can cause at
/// will (a failed TLS handshake, running out of descriptors), so that a flood cannot fill
/// the log; the next message that gets through says how many were held back. Pure: time
/// comes in as an argument.
package struct LogThrottle {
    package let interval: TimeAmount
    private var lastLogged: NIODeadline?
    private var heldBack = 0

    package init(interval: TimeAmount = .seconds(1)) {
        self.interval = interval
    }

    /// nil: do not log this one. Otherwise log it, with the count of those held back since the last.
    package mutating func admit(now: NIODeadline) -> Int? {
        if let lastLogged, now - lastLogged < interval {
            heldBack += 1
            return nil
        }
        lastLogged = now
        defer { heldBack = 0 }
        return heldBack
    }

    /// As `admit`, with the count said as the end of the message: "" or " (and N more since
    /// the last one logged)".
    package mutating func admitNote(now: NIODeadline) -> String? {
        admit(now: now).map { $0 > 0 ? " (and \($0) more since the last one logged)" : "" }
    }
}
