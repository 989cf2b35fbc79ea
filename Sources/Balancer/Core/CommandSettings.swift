import NIOCore

/// The commands that name one field of the `Configuration`: each is one entry here, holding its
/// keyword, its bounds and the field it sets; parsing, applying, answering and `write` are
/// generic over them (`CommandKeyword.table`, `FlagChange`, `SettingChange`, `FileCommand`).
extension Command {
    /// An on/off setting: `NAME` turns it on, `no NAME` off. pen's algorithm flags and more.
    public struct Flag: Hashable, Sendable {
        public let rawValue: String
        let field: WritableKeyPath<Configuration, Bool> & Sendable

        private init(_ name: String, _ field: WritableKeyPath<Configuration, Bool> & Sendable) {
            rawValue = name
            self.field = field
        }

        public static let roundRobin = Flag("roundrobin", \.selection.roundRobin)
        public static let hash = Flag("hash", \.selection.hash)
        public static let weight = Flag("weight", \.selection.weight)
        public static let priority = Flag("prio", \.selection.priority)
        public static let stubborn = Flag("stubborn", \.selection.stubborn)
        /// Maglev's consistent hash of the client address: every node places a client alike.
        public static let maglev = Flag("maglev", \.selection.maglev)
        public static let tcpNoDelay = Flag("tcp_nodelay", \.tcpNoDelay)
        /// pen's HTTP mode (`-H`): add X-Forwarded-For to requests.
        public static let http = Flag("http", \.forwardedFor)
        /// Each client sends a PROXY protocol header first (an upstream balancer does), whose
        /// source address stands for the client's.
        public static let acceptProxy = Flag("accept_proxy", \.acceptProxy)
        /// A TCP control port may run the commands that name a file (off by default: the port
        /// is unauthenticated, and penha writes, reads or runs such a file as its user).
        public static let controlTCPFiles = Flag("control_tcp_files", \.controlTCPFiles)
        /// Listen on an address this host may not have yet (IP_FREEBIND): a VIP that another
        /// penha's VRRP moves. Read at start. Implied by `vrrp`.
        public static let freeBind = Flag("freebind", \.freeBind)

        public static let allCases = [roundRobin, hash, weight, priority, stubborn, maglev, tcpNoDelay, http, acceptProxy, controlTCPFiles, freeBind]
    }

    /// A number: `NAME N` sets it and answers it, `NAME` alone answers it.
    public struct Setting: Hashable, Sendable {
        public let rawValue: String
        /// The values the setting takes; a larger one is refused where it is parsed, before
        /// it can reach an allocation or a time calculation.
        public let range: ClosedRange<Int>
        public let field: WritableKeyPath<Configuration, Int> & Sendable
        /// The value's letter in the usage (`blacklist [T]`).
        let placeholder: String
        /// The value names one of pen's access lists, and the error says so.
        private let isAccessList: Bool

        private init(_ name: String, _ range: ClosedRange<Int>, _ field: WritableKeyPath<Configuration, Int> & Sendable,
                     placeholder: String = "N", isAccessList: Bool = false) {
            rawValue = name
            self.range = range
            self.field = field
            self.placeholder = placeholder
            self.isAccessList = isAccessList
        }

        private static func accessList(_ name: String, _ field: WritableKeyPath<Configuration, Int> & Sendable) -> Setting {
            Setting(name, 0...(AccessLists.count - 1), field, isAccessList: true)
        }

        public static let blacklist = Setting("blacklist", 0...Limits.seconds, \.blacklistSeconds, placeholder: "T")
        public static let clientsMax = Setting("clients_max", 1...Limits.clients, \.clientsMax)
        public static let connectionsMax = Setting("conn_max", 0...Limits.connections, \.connectionsMax)
        public static let debug = Setting("debug", 0...Limits.debugLevel, \.debugLevel)
        public static let timeout = Setting("timeout", 1...Limits.connectTimeout, \.connectTimeoutSeconds)
        public static let tracking = Setting("tracking", 0...Limits.seconds, \.trackingSeconds)
        public static let idleTimeout = Setting("idle_timeout", 0...Limits.seconds, \.idleTimeoutSeconds)
        /// The access list clients are checked against (pen's default: 0).
        public static let clientACL = accessList("client_acl", \.clientACL)
        /// The access list control connections are checked against (pen's default: 0).
        public static let controlACL = accessList("control_acl", \.controlACL)
        /// The TCP engine's threads; 0: one per core. Read at start.
        public static let threads = Setting("threads", 0...Limits.threads, \.threads)
        /// Seconds a stopping penha relays its established connections before it closes them (`Drain`).
        public static let drain = Setting("drain", 0...Drain.longestSeconds, \.drainSeconds)

        public static let allCases = [blacklist, clientsMax, connectionsMax, debug, timeout, tracking, idleTimeout,
                                      clientACL, controlACL, threads, drain]

        /// `value`, if it is within `range`; `name` is how the user gave it (`-c`, `clients_max`).
        public func check(_ value: Int, as name: String? = nil) throws -> Int {
            let name = name ?? rawValue
            guard isAccessList else { return try boundedNumber(value, range, for: name) }
            guard range.contains(value) else {
                throw ConfigurationError("\(name) must name an access list, 0-9, not \(value)")
            }
            return value
        }
    }

    /// A file: `NAME FILE` sets it, `NAME` alone answers it, `no NAME` turns it off.
    public struct FileSetting: Hashable, Sendable {
        public let rawValue: String
        let field: WritableKeyPath<Configuration, String?> & Sendable

        private init(_ name: String, _ field: WritableKeyPath<Configuration, String?> & Sendable) {
            rawValue = name
            self.field = field
        }

        public static let log = FileSetting("log", \.logFile)
        public static let webStats = FileSetting("web_stats", \.webStatsFile)

        public static let allCases = [log, webStats]
    }
}

extension Command {
    public enum FileChange: Equatable, Sendable {
        /// Without an argument: which file, if any.
        case show
        case set(String)
        /// The `no` form.
        case off
    }
}

/// `NAME` or `no NAME`, for a `Flag`.
struct FlagChange: SettingCommand {
    let flag: Command.Flag
    let enabled: Bool

    var line: [String] { enabled ? [flag.rawValue] : ["no", flag.rawValue] }

    func apply(to configuration: inout Configuration) {
        configuration[keyPath: flag.field] = enabled
    }

    static func saved(from configuration: Configuration) -> [Command] {
        Command.Flag.allCases.map { .flag($0, configuration[keyPath: $0.field]) }
    }
}

/// `NAME N`, which sets a `Setting` and answers it, or `NAME`, which answers it.
struct SettingChange: SettingCommand {
    let setting: Command.Setting
    let value: Int?

    var line: [String] { [setting.rawValue] + (value.map { ["\($0)"] } ?? []) }

    func apply(to configuration: inout Configuration) throws {
        guard let value else { throw ConfigurationError("'\(setting.rawValue)' needs a value here") }
        // Commands come bounded from Command.parse; a Command made in code is checked too.
        configuration[keyPath: setting.field] = try setting.check(value)
    }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        if value != nil {
            try apply(to: &runtime.configuration)
            runtime.state.fitClientTable()
        }
        return Runtime.Outcome(lines: ["\(runtime.configuration[keyPath: setting.field])"])
    }

    static func saved(from configuration: Configuration) -> [Command] {
        Command.Setting.allCases.map { .setting($0, configuration[keyPath: $0.field]) }
    }
}

/// `NAME FILE`, `no NAME`, or `NAME` alone, which answers the file, for a `FileSetting`.
struct FileCommand: SettingCommand {
    let file: Command.FileSetting
    let change: Command.FileChange

    var line: [String] {
        switch change {
        case .show: return [file.rawValue]
        case .set(let path): return [file.rawValue, path]
        case .off: return ["no", file.rawValue]
        }
    }

    var preparation: [Command.Preparation] {
        switch (file, change) {
        case (.log, .set(let path)): return [.log(path: path)]
        case (.log, .off): return [.log(path: nil)]
        case (.webStats, .set(let path)): return [.replaceable(path: path)]
        default: return []
        }
    }

    func apply(to configuration: inout Configuration) throws {
        switch change {
        case .show: throw ConfigurationError("'\(file.rawValue)' needs a file name here")
        case .set(let name): configuration[keyPath: file.field] = name
        case .off: configuration[keyPath: file.field] = nil
        }
    }

    func execute(in runtime: inout Runtime, facts: Runtime.Facts, resolved: [String: SocketAddress]) throws -> Runtime.Outcome {
        guard change != .show else { return Runtime.Outcome(lines: runtime.configuration[keyPath: file.field].map { [$0] } ?? []) }
        try apply(to: &runtime.configuration)
        return Runtime.Outcome(effects: file == .log ? [.reopenLog] : [])
    }

    static func saved(from configuration: Configuration) -> [Command] {
        Command.FileSetting.allCases.map { .file($0, configuration[keyPath: $0.field].map(Command.FileChange.set) ?? .off) }
    }
}
