/// The commands that name one field of the `Configuration`: each is one entry here, holding its
/// keyword, its bounds and the field it sets; parsing, applying, answering and `write` are
/// generic over them (`CommandKeyword.table`, `Configuration.apply`, `Configuration.commands`).
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
