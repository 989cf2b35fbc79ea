import NIOCore

/// `metrics ADDR:PORT [acl N]`: where Prometheus scrapes `GET /metrics`. A bare port means
/// 127.0.0.1; an address off loopback needs `acl N` naming a list with entries, as the
/// control port does (`Endpoint.checkProtected`): the numbers tell an outsider much.
public struct MetricsEndpoint: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// The access list scrapers are checked against; nil checks none (loopback only).
    public var acl: Int?

    public init(host: String, port: Int, acl: Int? = nil) {
        self.host = host
        self.port = port
        self.acl = acl
    }

    /// The command's arguments: `PORT` or `HOST:PORT`, then optionally `acl N`.
    public static func parse(_ words: [String]) throws -> MetricsEndpoint {
        guard let text = words.first, words.count == 1 || (words.count == 3 && words[1] == "acl") else {
            throw ConfigurationError("'metrics' needs ADDRESS:PORT, optionally followed by 'acl N'")
        }
        let acl = try words.count == 3 ? AccessLists.listNumber(words[2]) : nil
        if text.allSatisfy({ $0.isASCII && $0.isNumber }) {
            guard let port = Int(text) else { throw ConfigurationError("bad port '\(text)': not within 1-65535") }
            return MetricsEndpoint(host: "127.0.0.1", port: try validPort(port, in: text), acl: acl)
        }
        let (host, port) = try parseHostPort(text, what: "metrics address")
        guard (try? SocketAddress(ipAddress: host, port: port)) != nil else {
            throw ConfigurationError("metrics address '\(text)' needs an IP address, not a host name")
        }
        return MetricsEndpoint(host: host, port: port, acl: acl)
    }

    /// The command's arguments, as `parse` reads them back.
    public var words: [String] { [description] + (acl.map { ["acl", "\($0)"] } ?? []) }

    public var description: String { Endpoint.describe(host: host, port: port) }

    /// Off loopback only with `acl N` naming a list that has entries.
    public func checkProtected(by lists: AccessLists) throws {
        guard let address = try? SocketAddress(ipAddress: host, port: port), !Endpoint.isLoopback(address) else { return }
        guard let acl, !lists.lists[acl].isEmpty else {
            throw ConfigurationError("the metrics port \(self) is off loopback: it needs 'acl N' naming a list with entries "
                                     + "(acl 2 permit ADDRESS, metrics \(self) acl 2)")
        }
    }
}
