import NIOCore

/// The relayed TCP connections by the number `connection N` and `close N` use: what `close`
/// needs to reach them. On the service's event loop.
final class ConnectionRegistry {
    private var relayed: [Int: (client: Channel, upstream: Channel)] = [:]

    func add(_ number: Int, client: Channel, upstream: Channel) {
        relayed[number] = (client, upstream)
    }

    func remove(_ number: Int) {
        relayed[number] = nil
    }

    /// `close N`: both sides, at once.
    func close(_ number: Int) {
        relayed[number]?.client.close(promise: nil)
        relayed[number]?.upstream.close(promise: nil)
    }
}
