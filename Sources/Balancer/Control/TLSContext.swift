import BalancerCore
import COpenSSL
import Engine

#if canImport(Glibc)
import Glibc
#endif

/// An OpenSSL server context made from `TLSSettings`, plus one per server name found in the
/// SNI directory. Immutable once made: a reload makes a new one and swaps it in only when it
/// loaded, and each connection holds the context it started with.
// Unchecked: OpaquePointer is not Sendable, but the SSL_CTXs are immutable lets that OpenSSL
// lets threads share once set up (SSL_new from several threads): a lock would guard nothing.
final class TLSContext: TLSServerContext, @unchecked Sendable {
    let context: OpaquePointer
    /// Contexts chosen by the name the client asks for (RFC 6066 section 3), names lowercased.
    private let byName: [String: OpaquePointer]

    /// Loads every file now, so that a bad one is reported by name before anything changes.
    init(settings: TLSSettings) throws {
        guard let certificate = settings.certificateFile else {
            throw ConfigurationError("TLS needs a certificate (-E)")
        }
        let main = try Self.make(settings, certificate: certificate, key: settings.keyFile ?? certificate,
                                 caFile: settings.caFile)
        do {
            byName = try settings.sniDirectory.map { try Self.loadNames(in: $0, settings) } ?? [:]
        } catch {
            SSL_CTX_free(main)
            throw error
        }
        context = main
        if !byName.isEmpty {
            penha_SSL_CTX_set_servername_callback(main, chooseByServerName, Unmanaged.passUnretained(self).toOpaque())
        }
    }

    deinit {
        SSL_CTX_free(context)
        byName.values.forEach(SSL_CTX_free)
    }

    fileprivate func context(forName name: String) -> OpaquePointer? {
        byName[name.lowercased()]
    }

    /// The SNI directory's NAME.crt files, each with NAME.key and, if there, NAME.ca (pen's layout).
    private static func loadNames(in directory: String, _ settings: TLSSettings) throws -> [String: OpaquePointer] {
        var loaded: [String: OpaquePointer] = [:]
        do {
            for name in try certificateNames(in: directory) {
                let base = "\(directory)/\(name)"
                let caFile = access("\(base).ca", R_OK) == 0 ? "\(base).ca" : settings.caFile
                // Names are matched without case (DNS), so two files may not claim the same one.
                guard loaded[name.lowercased()] == nil else {
                    throw ConfigurationError("ssl_sni_path \(directory): two certificates for the name \(name.lowercased()) "
                                             + "(file names differ only in case)")
                }
                loaded[name.lowercased()] = try make(settings, certificate: "\(base).crt", key: "\(base).key", caFile: caFile)
            }
        } catch {
            loaded.values.forEach(SSL_CTX_free)
            throw error
        }
        return loaded
    }

    private static func certificateNames(in directory: String) throws -> [String] {
        guard let stream = opendir(directory) else {
            throw ConfigurationError("ssl_sni_path \(directory): cannot open the directory: \(String(cString: strerror(errno)))")
        }
        defer { closedir(stream) }
        var names: [String] = []
        // Bounded by the directory's entries.
        while let entry = readdir(stream) {
            let file = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if file.hasSuffix(".crt"), file.count > 4 { names.append(String(file.dropLast(4))) }
        }
        return names.sorted()
    }

    private static func make(_ settings: TLSSettings, certificate: String, key: String, caFile: String?) throws -> OpaquePointer {
        ERR_clear_error()
        guard let context = SSL_CTX_new(TLS_server_method()) else {
            throw ConfigurationError("cannot make a TLS context: \(openSSLErrors())")
        }
        do {
            try configure(context, settings, certificate: certificate, key: key, caFile: caFile)
            return context
        } catch {
            SSL_CTX_free(context)
            throw error
        }
    }

    /// Whether a PEM file holds an encrypted key (PKCS#8 or the traditional Proc-Type header).
    /// By line prefixes: String.contains(String) alone would link Swift's regex libraries
    /// (1.2 MB of the binary).
    private static func isEncrypted(_ path: String) -> Bool {
        guard let text = try? ConfigFile.contents(of: path) else { return false }
        return text.split(whereSeparator: \.isNewline).contains {
            $0.hasPrefix("-----BEGIN ENCRYPTED PRIVATE KEY-----") || $0.hasPrefix("Proc-Type: 4,ENCRYPTED")
        }
    }

    private static func configure(_ context: OpaquePointer, _ settings: TLSSettings, certificate: String, key: String,
                                  caFile: String?) throws {
        let version = settings.effectiveMinimumVersion == .tls13 ? TLS1_3_VERSION : TLS1_2_VERSION
        guard penha_SSL_CTX_set_min_proto_version(context, version) == 1 else {
            throw ConfigurationError("cannot set the minimum TLS version: \(openSSLErrors())")
        }
        var options = penha_SSL_OP_NO_RENEGOTIATION()
        if settings.options.contains(.cipherServerPreference) { options |= penha_SSL_OP_CIPHER_SERVER_PREFERENCE() }
        SSL_CTX_set_options(context, options)
        penha_SSL_CTX_set_mode_release_buffers(context)
        if let ciphers = settings.ciphers, SSL_CTX_set_cipher_list(context, ciphers) != 1 {
            throw ConfigurationError("ssl_ciphers \(ciphers): no usable cipher: \(openSSLErrors())")
        }
        // OpenSSL opens files by name with a blocking open: a FIFO there would hang the thread.
        for file in [certificate, key] + (caFile.map { [$0] } ?? []) {
            do {
                try FileAccess.requireRegularFile(file, action: "load")
            } catch let error as PenhaError where error.kind == .io {
                throw ConfigurationError(error.description)
            }
        }
        guard SSL_CTX_use_certificate_chain_file(context, certificate) == 1 else {
            throw ConfigurationError("cannot load the certificate \(certificate): \(openSSLErrors())")
        }
        penha_SSL_CTX_refuse_passphrases(context)
        guard SSL_CTX_use_PrivateKey_file(context, key, SSL_FILETYPE_PEM) == 1 else {
            if isEncrypted(key) {
                ERR_clear_error()
                throw ConfigurationError("the private key \(key) is encrypted: penha needs it without a passphrase "
                                         + "(openssl pkey -in \(key) -out KEYFILE writes one)")
            }
            throw ConfigurationError("cannot load the private key \(key): \(openSSLErrors())")
        }
        guard SSL_CTX_check_private_key(context) == 1 else {
            throw ConfigurationError("the private key \(key) does not match the certificate \(certificate)")
        }
        if caFile != nil || settings.caDirectory != nil {
            guard SSL_CTX_load_verify_locations(context, caFile, settings.caDirectory) == 1 else {
                let what = [caFile, settings.caDirectory].compactMap { $0 }.joined(separator: " and ")
                throw ConfigurationError("cannot load the CA certificates \(what): \(openSSLErrors())")
            }
            if let caFile, let names = SSL_load_client_CA_file(caFile) {
                // Tells clients which CAs their certificate should come from.
                SSL_CTX_set_client_CA_list(context, names)
            }
        }
        let verify = settings.requireClientCertificate ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_NONE
        SSL_CTX_set_verify(context, verify, nil)
        // Session resumption with client certificates needs a context id.
        let id = Array("penha".utf8)
        SSL_CTX_set_session_id_context(context, id, UInt32(id.count))
    }
}

/// The SNI callback: switches the connection to the context of the name asked for; an
/// unknown name or none keeps the default certificate.
private func chooseByServerName(_ ssl: OpaquePointer?, _ alert: UnsafeMutablePointer<Int32>?,
                                _ argument: UnsafeMutableRawPointer?) -> Int32 {
    guard let ssl, let argument, let name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else {
        return SSL_TLSEXT_ERR_NOACK
    }
    let owner = Unmanaged<TLSContext>.fromOpaque(argument).takeUnretainedValue()
    guard let chosen = owner.context(forName: String(cString: name)) else { return SSL_TLSEXT_ERR_NOACK }
    SSL_set_SSL_CTX(ssl, chosen)
    return SSL_TLSEXT_ERR_OK
}
