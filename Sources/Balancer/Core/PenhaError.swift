/// Every error penha reports to a person, of one of four kinds, and for a configuration line
/// where it came from. `description` is the one rendering (the control socket puts `error: `
/// before it, the command line `penha: `) and the kind decides the exit status, so that tests
/// can match the kind rather than the words (swift-nio-ssh's one error type with its codes).
public struct PenhaError: Error, Equatable, CustomStringConvertible, Sendable {
    public enum Kind: Equatable, Sendable {
        /// A command line that cannot be taken as given.
        case usage
        /// A mistake in a command, a file, or in how their settings combine.
        case configuration
        /// A well-formed command that cannot be carried out here and now (`close 7` with no
        /// connection 7, `exit` without -X).
        case command
        /// A file or socket operation that failed (`cannot open log /var/log/p.log: permission denied`).
        case io
    }

    public let kind: Kind
    /// What is wrong, without where.
    public let reason: String
    /// Where the line came from, outermost first ("penha.conf:3", "-O 'timeout 0'"); nil when unknown.
    public let origin: String?

    /// A configuration error unless told otherwise: what most call sites (`ConfigurationError("...")`) make.
    public init(_ reason: String, kind: Kind = .configuration) {
        self.init(kind: kind, reason: reason, origin: nil)
    }

    private init(kind: Kind, reason: String, origin: String?) {
        self.kind = kind
        self.reason = reason
        self.origin = origin
    }

    /// A command that cannot be carried out here and now.
    public static func command(_ reason: String) -> PenhaError { PenhaError(reason, kind: .command) }

    public var description: String { origin.map { "\($0): \(reason)" } ?? reason }

    /// The same error, said to come from `origin` when there is one (an include's line inside
    /// the line that included it).
    public func at(_ origin: String?) -> PenhaError {
        guard let origin else { return self }
        return PenhaError(kind: kind, reason: reason, origin: self.origin.map { "\(origin): \($0)" } ?? origin)
    }

    /// pen's convention: 1 for an operation that failed, 2 for what was asked wrongly.
    public var exitStatus: Int32 { kind == .io ? 1 : 2 }

    /// The same kind and the same words, however the origin was given.
    public static func == (lhs: PenhaError, rhs: PenhaError) -> Bool {
        lhs.kind == rhs.kind && lhs.description == rhs.description
    }
}

/// A mistake in a command, a file or the command line's options: `ConfigurationError("...")`
/// makes a `PenhaError` of the `.configuration` kind.
public typealias ConfigurationError = PenhaError
