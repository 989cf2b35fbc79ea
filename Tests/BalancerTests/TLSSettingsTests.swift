import XCTest
@testable import Balancer
@testable import BalancerCore

/// pen's TLS options and commands as `TLSSettings`: what they set, what is refused and why,
/// and `write` saving the commands so that they read back to the same settings.
final class TLSSettingsTests: XCTestCase {
    private func commandLine(certificate: String? = "c.pem", key: String? = nil, caFile: String? = nil,
                             caDirectory: String? = nil, require: Bool = false, protocolName: String? = nil,
                             compatibility: Bool = false) throws -> TLSSettings {
        try TLSSettings.commandLine(certificate: certificate, key: key, caFile: caFile, caDirectory: caDirectory,
                                    requireClientCertificate: require, protocolName: protocolName,
                                    compatibility: compatibility)
    }

    func testTheOptionsSetTheSettings() throws {
        XCTAssertFalse(try commandLine(certificate: nil).isEnabled, "no -E, no TLS")
        let settings = try commandLine(key: "k.pem", caFile: "ca.pem", caDirectory: "/etc/ssl/certs", require: true,
                                       protocolName: "TLS1.3")
        XCTAssertTrue(settings.isEnabled)
        XCTAssertEqual(settings.certificateFile, "c.pem")
        XCTAssertEqual(settings.keyFile, "k.pem")
        XCTAssertEqual(settings.caFile, "ca.pem")
        XCTAssertEqual(settings.caDirectory, "/etc/ssl/certs")
        XCTAssertTrue(settings.requireClientCertificate)
        XCTAssertEqual(settings.minimumVersion, .tls13)
        XCTAssertEqual(try commandLine().minimumVersion, .tls12, "TLS 1.2 at least by default")
    }

    func testObsoleteAndIncompleteOptionsAreRefusedWithTheReason() {
        let cases: [(() throws -> TLSSettings, String)] = [
            ({ try self.commandLine(compatibility: true) }, "-Z"),
            ({ try self.commandLine(protocolName: "ssl3") }, "obsolete (RFC 8996)"),
            ({ try self.commandLine(protocolName: "tls1.1") }, "obsolete (RFC 8996)"),
            ({ try self.commandLine(protocolName: "tls2") }, "tls1.2 or tls1.3, not 'tls2'"),
            ({ try self.commandLine(require: true) }, "-R needs -G or -A"),
            ({ try self.commandLine(certificate: nil, key: "k.pem") }, "-K needs -E"),
            ({ try self.commandLine(certificate: nil, caFile: "ca.pem") }, "-G needs -E"),
            ({ try self.commandLine(certificate: nil, protocolName: "tls1.3") }, "-L needs -E"),
        ]
        for (make, reason) in cases {
            XCTAssertThrowsError(try make(), reason) { error in
                XCTAssertTrue("\(error)".contains(reason), "'\(error)' does not say '\(reason)'")
            }
        }
    }

    func testNoTLSv12RaisesTheMinimumAndTheOlderOnesChangeNothing() {
        var settings = TLSSettings()
        for option in [TLSOption.noSSLv2, .noSSLv3, .noTLSv1, .noTLSv1_1] { settings.apply(.option(option)) }
        XCTAssertEqual(settings.effectiveMinimumVersion, .tls12)
        settings.apply(.option(.noTLSv1_2))
        XCTAssertEqual(settings.effectiveMinimumVersion, .tls13)
    }

    func testWriteSavesTheCommandsAndTheyReadBackToTheSameSettings() throws {
        var configuration = Configuration(listen: .inet(host: "0.0.0.0", port: 443), servers: [])
        configuration.tls = try commandLine(key: "k.pem")
        for line in ["ssl_ciphers HIGH:!aNULL", "ssl_option cipher_server_preference", "ssl_option no_tlsv1.2",
                     "ssl_sni_path /etc/penha/sni"] {
            try configuration.apply(try Command.parse(line))
        }
        XCTAssertEqual(configuration.tls.ciphers, "HIGH:!aNULL")
        XCTAssertEqual(configuration.tls.options, [.cipherServerPreference, .noTLSv1_2])
        XCTAssertEqual(configuration.tls.sniDirectory, "/etc/penha/sni")
        let saved = configuration.commands.map(\.text)
        XCTAssertEqual(saved.filter { $0.hasPrefix("ssl_") }, ["ssl_ciphers HIGH:!aNULL", "ssl_option no_tlsv1.2",
                                                              "ssl_option cipher_server_preference", "ssl_sni_path /etc/penha/sni"])
        // The files are options of the command line, which a reader of the file starts with.
        var reread = Configuration(listen: .inet(host: "0.0.0.0", port: 443), servers: [])
        reread.tls = try commandLine(key: "k.pem")
        for text in saved { try reread.apply(try Command.parse(text)) }
        XCTAssertEqual(reread.tls, configuration.tls)
    }
}
