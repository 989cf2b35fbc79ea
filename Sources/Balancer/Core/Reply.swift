/// What a command answers on the control socket: its lines, then the errors, if any, each
/// on a line of its own as `error: MESSAGE`. The one place that writes that prefix and the
/// one that recognises it (`penha ctl` and `penha status` read answers through it).
public struct Reply: Equatable, Sendable {
    public var lines: [String]
    /// One for a refused command; a command that applied can still report a part that did
    /// not (TLS files that did not load).
    public var errors: [String]
    /// `exit`: the caller stops penha once the answer is sent.
    public var exitRequested = false

    public init(lines: [String] = [], errors: [String] = [], exitRequested: Bool = false) {
        self.lines = lines
        self.errors = errors
        self.exitRequested = exitRequested
    }

    /// A refused command: its error, said as the error describes itself.
    public init(refusing error: Error) {
        self.init(errors: ["\(error)"])
    }

    private static let errorPrefix = "error: "

    /// The answer as it goes on the wire.
    public var wireLines: [String] { lines + errors.map { Self.errorPrefix + $0 } }

    /// An answer read back from the wire.
    public init(wireLines: [String]) {
        self.init(lines: wireLines.filter { !$0.hasPrefix(Self.errorPrefix) },
                  errors: wireLines.filter { $0.hasPrefix(Self.errorPrefix) }.map { String($0.dropFirst(Self.errorPrefix.count)) })
    }
}
