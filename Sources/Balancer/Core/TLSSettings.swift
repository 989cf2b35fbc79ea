/// How penha terminates TLS for its clients: pen's `-E -K -G -A -R -L` options and its
/// `ssl_ciphers`, `ssl_option` and `ssl_sni_path` commands. Pure: `TLSContext` loads the files.
///
/// Defaults are today's, not pen's: TLS 1.2 at least, TLS 1.3 on, OpenSSL's default ciphers.
public struct TLSSettings: Equatable, Sendable {
    /// `-E`: the server certificate (PEM, may be followed by its chain). TLS is on when set.
    public var certificateFile: String?
    /// `-K`: the private key; nil means it is in the certificate file.
    public var keyFile: String?
    /// `-G`: CA certificates that client certificates are verified against.
    public var caFile: String?
    /// `-A`: a directory of hashed CA certificates (`openssl rehash`), the same use.
    public var caDirectory: String?
    /// `-R`: a client without a certificate signed by the CAs is refused.
    public var requireClientCertificate = false
    /// `-L`: the oldest protocol version accepted.
    public var minimumVersion = TLSVersion.tls12
    /// `ssl_ciphers`: an OpenSSL cipher list for TLS 1.2 (TLS 1.3 keeps OpenSSL's suites).
    public var ciphers: String?
    /// `ssl_option`, one command each.
    public var options: Set<TLSOption> = []
    /// `ssl_sni_path`: a directory with NAME.crt, NAME.key and optionally NAME.ca per server name.
    public var sniDirectory: String?

    public init() {}

    public var isEnabled: Bool { certificateFile != nil }

    /// The oldest version accepted once `ssl_option no_tlsv1.2` is taken into account.
    public var effectiveMinimumVersion: TLSVersion {
        options.contains(.noTLSv1_2) ? max(minimumVersion, .tls13) : minimumVersion
    }

    /// The options as pen's command line gives them; throws for options without `-E` and
    /// for pen's obsolete protocol choices.
    public static func commandLine(certificate: String?, key: String?, caFile: String?, caDirectory: String?,
                                   requireClientCertificate: Bool, protocolName: String?,
                                   compatibility: Bool) throws -> TLSSettings {
        if compatibility {
            throw ConfigurationError("option -Z (OpenSSL's workarounds for old SSL peers) is obsolete and refused")
        }
        var settings = TLSSettings()
        if let protocolName { settings.minimumVersion = try TLSVersion.parse(protocolName) }
        guard let certificate else {
            let given = [(key != nil, "-K"), (caFile != nil, "-G"), (caDirectory != nil, "-A"),
                         (requireClientCertificate, "-R"), (protocolName != nil, "-L")]
            if let option = given.first(where: \.0)?.1 {
                throw ConfigurationError("option \(option) needs -E: TLS is on only with a certificate")
            }
            return settings
        }
        if requireClientCertificate && caFile == nil && caDirectory == nil {
            throw ConfigurationError("option -R needs -G or -A: the CAs that client certificates are checked against")
        }
        settings.certificateFile = certificate
        settings.keyFile = key
        settings.caFile = caFile
        settings.caDirectory = caDirectory
        settings.requireClientCertificate = requireClientCertificate
        return settings
    }

    public mutating func apply(_ command: TLSCommand) {
        switch command {
        case .ciphers(let list): ciphers = list
        case .option(let option): options.insert(option)
        case .sniDirectory(let path): sniDirectory = path
        }
    }

    /// The commands that recreate the command-language part (the files are options).
    public var commands: [TLSCommand] {
        (ciphers.map { [.ciphers($0)] } ?? [])
            + TLSOption.allCases.filter(options.contains).map(TLSCommand.option)
            + (sniDirectory.map { [.sniDirectory($0)] } ?? [])
    }
}

/// The protocol versions penha accepts; older ones are prohibited (RFC 8996).
public enum TLSVersion: String, Comparable, Sendable {
    case tls12 = "tls1.2"
    case tls13 = "tls1.3"

    /// pen's `-L` names; the obsolete ones are refused with the reason.
    static func parse(_ name: String) throws -> TLSVersion {
        if let version = TLSVersion(rawValue: name.lowercased()) { return version }
        if ["ssl2", "ssl3", "ssl23", "tls1", "tls1.0", "tls1.1"].contains(name.lowercased()) {
            throw ConfigurationError("-L \(name): SSL and TLS before 1.2 are obsolete (RFC 8996) and refused; "
                                     + "use -L tls1.2 or -L tls1.3")
        }
        throw ConfigurationError("-L needs tls1.2 or tls1.3, not '\(name)'")
    }

    private var order: Int { self == .tls12 ? 0 : 1 }

    public static func < (lhs: TLSVersion, rhs: TLSVersion) -> Bool { lhs.order < rhs.order }
}

/// pen's `ssl_option` names. Those switching off SSL 2/3 and TLS 1.0/1.1 are accepted so
/// that pen's files still read, and change nothing: penha never speaks those versions.
public enum TLSOption: String, CaseIterable, Sendable {
    case noSSLv2 = "no_sslv2"
    case noSSLv3 = "no_sslv3"
    case noTLSv1 = "no_tlsv1"
    case noTLSv1_1 = "no_tlsv1.1"
    case noTLSv1_2 = "no_tlsv1.2"
    case cipherServerPreference = "cipher_server_preference"
}

/// The `ssl_*` commands.
public enum TLSCommand: Equatable, Sendable {
    case ciphers(String)
    case option(TLSOption)
    case sniDirectory(String)
}
