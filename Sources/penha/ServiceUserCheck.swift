import BalancerCore

#if canImport(Glibc)
import Glibc
#endif

/// `penha check` run as root, for the systemd units the package installs (deploy/penha.service,
/// penha@.service): they run penha as a dynamic user, which owns no file and is in no file's
/// group, with /home, /root and /run/user hidden (ProtectHome=) and the whole tree read-only
/// (ProtectSystem=strict) but the unit's own directories. A file root can use and that user
/// cannot is a start or a reload that fails later: each is a warning, with what to do.
enum ServiceUserCheck {
    /// What the units hand over as a credential (LoadCredential=, bound over the same path),
    /// readable by the service whatever its mode.
    static let credentials: Set<String> = ["/etc/penha/sync.key"]
    /// Where the units let penha write: LogsDirectory=, RuntimeDirectory=, PrivateTmp=.
    static let writable = ["/var/log/penha/", "/run/penha/", "/tmp/", "/var/tmp/"]
    /// ProtectHome=yes.
    static let hidden = ["/home/", "/root/", "/run/user/"]

    static func warnings(configuration: Configuration, lines: [ConfigLine], configFile: String?) -> [String] {
        let credential = "pass it as a credential (LoadCredential=, README: \"Secrets under systemd\")"
        var read: [(what: String, path: String, advice: String)] = []
        let files = [configFile].compactMap { $0 } + lines.compactMap { $0.origin.flatMap(fileName) }
        for file in files where !read.contains(where: { $0.path == file }) {
            read.append(("the configuration file", file, "make it readable by all (0644) and keep secrets in credentials"))
        }
        if let sync = configuration.sync, !credentials.contains(sync.keyFile) {
            read.append(("the sync key", sync.keyFile, "put it in /etc/penha/sync.key, which the unit passes as a credential"))
        }
        let tls = configuration.tls
        for (what, path) in [("TLS certificate", tls.certificateFile), ("TLS key", tls.keyFile), ("TLS CA file", tls.caFile),
                             ("TLS CA directory", tls.caDirectory), ("ssl_sni_path", tls.sniDirectory)] {
            if let path { read.append((what, path, credential)) }
        }
        var warnings = read.compactMap { what, path, advice in
            unreadableReason(path).map { "\(what) \(path): penha's systemd unit runs as a dynamic user, which cannot read it ("
                + "\($0)); \(advice)" }
        }
        for (what, path) in [("log", configuration.logFile), ("web_stats", configuration.webStatsFile)] {
            guard let path, path.hasPrefix("/"), !writable.contains(where: path.hasPrefix) else { continue }
            warnings.append("\(what) \(path): penha's systemd unit can write only under "
                            + writable.joined(separator: ", ") + " (ProtectSystem=strict); use /var/log/penha/ (LogsDirectory=)")
        }
        return warnings
    }

    /// The file of a line's origin (`FILE:LINE`); nil for `-O`.
    private static func fileName(_ origin: String) -> String? {
        guard !origin.hasPrefix("-O "), let colon = origin.lastIndex(of: ":") else { return nil }
        return String(origin[..<colon])
    }

    /// Why a user that is neither owner nor in the group cannot read `path`; nil when it can,
    /// and when the path does not resolve (the check's own error says so).
    static func unreadableReason(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        let real = String(cString: resolved)
        free(resolved)
        if let home = hidden.first(where: { real.hasPrefix($0) }) {
            return "\(home.dropLast()) is hidden from it (ProtectHome=)"
        }
        var directory = ""
        for component in real.split(separator: "/").dropLast() {
            directory += "/\(component)"
            if let mode = permissions(directory), mode.bits & S_IXOTH == 0 {
                return "\(directory) cannot be entered: \(mode.description)"
            }
        }
        guard let mode = permissions(real) else { return nil }
        let needed = mode.isDirectory ? S_IROTH | S_IXOTH : S_IROTH
        return mode.bits & needed == needed ? nil : mode.description
    }

    private struct Permissions {
        let bits: mode_t
        let isDirectory: Bool
        let description: String
    }

    private static func permissions(_ path: String) -> Permissions? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        let owner = getpwuid(status.st_uid).map { String(cString: $0.pointee.pw_name) } ?? "\(status.st_uid)"
        let octal = String(status.st_mode & 0o7777, radix: 8)
        return Permissions(bits: status.st_mode, isDirectory: status.st_mode & S_IFMT == S_IFDIR,
                           description: "mode \(String(repeating: "0", count: max(0, 4 - octal.count)) + octal), owner \(owner)")
    }
}
