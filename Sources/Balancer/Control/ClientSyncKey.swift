import BalancerCore
import COpenSSL

/// The shared key of `sync ... key FILE`, and HMAC-SHA-256 under it (libcrypto's one-shot HMAC).
struct ClientSyncKey: Sendable {
    /// Beyond any real key; a larger file is a mistake (the wrong file named), not a key.
    static let maxBytes = 4096
    /// Below this a key could be guessed.
    static let minBytes = 16

    private let bytes: [UInt8]

    init(bytes: [UInt8]) { self.bytes = bytes }

    /// The key file: a regular file of 16 to 4096 bytes, read without blocking (FileAccess).
    /// A trailing newline is not part of the key, so `echo KEY > FILE` and `printf` agree.
    static func read(_ path: String) throws -> ClientSyncKey {
        var bytes = try FileAccess.read(path, maxBytes: maxBytes, action: "read the sync key")
        while let last = bytes.last, last == 0x0A || last == 0x0D { bytes.removeLast() }
        guard bytes.count >= minBytes else {
            throw ConfigurationError("sync: the key in '\(path)' has \(bytes.count) bytes; it needs at least \(minBytes)")
        }
        return ClientSyncKey(bytes: bytes)
    }

    /// HMAC-SHA-256 of `message`.
    func mac(_ message: [UInt8]) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        let done = bytes.withUnsafeBytes { key in
            message.withUnsafeBufferPointer { data in
                HMAC(EVP_sha256(), key.baseAddress, Int32(key.count), data.baseAddress, data.count, &output, &length)
            }
        }
        // Only an allocation failure inside libcrypto fails; a MAC of zeros then simply never verifies.
        guard done != nil, Int(length) == SyncMessage.macSize else { return [UInt8](repeating: 0, count: SyncMessage.macSize) }
        return Array(output.prefix(Int(length)))
    }
}
