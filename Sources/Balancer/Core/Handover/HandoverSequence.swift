/// The order of a handover, as each side checks it: pure values, messages in, what to do out.
/// The old process: `listener`, wait for `accepting`, `connections`..., `done`, wait for
/// `adopted`. The new one: the mirror image. Anything else is refused, and a refused
/// handover leaves the old process serving.
public struct HandoverReception: Sendable {
    private enum State: Sendable {
        case awaitingListener
        case receivingConnections(count: Int)
        case finished
        case failed
    }

    /// What the new process does with a message.
    public enum Step: Equatable, Sendable {
        /// Accept on the listener (its descriptor came with the message), then send `accepting`.
        case adoptListener
        /// Relay these (their descriptors came with the message).
        case adoptConnections([HandedOverConnection])
        /// Merge these into the client table.
        case restoreClients([HandedOverClient])
        /// Add these to the counters.
        case addCounters(HandedOverCounters)
        /// Everything came: send `adopted`.
        case finished(connections: Int)
    }

    private var state = State.awaitingListener

    public init() {}

    public var isFinished: Bool {
        if case .finished = state { return true }
        return false
    }

    /// The next message from the old process; an error (its `refused` included) ends the handover.
    public mutating func receive(_ message: HandoverMessage) throws(HandoverError) -> Step {
        switch (state, message) {
        case (.awaitingListener, .listener):
            state = .receivingConnections(count: 0)
            return .adoptListener
        case (.receivingConnections(let count), .connections(let connections)):
            state = .receivingConnections(count: count + connections.count)
            return .adoptConnections(connections)
        case (.receivingConnections, .clients(let clients)):
            return .restoreClients(clients)
        case (.receivingConnections, .counters(let counters)):
            return .addCounters(counters)
        case (.receivingConnections(let count), .done):
            state = .finished
            return .finished(connections: count)
        case (.failed, _), (.finished, _):
            throw .unexpected("a message after the handover ended")
        case (_, .refused(let reason)):
            state = .failed
            throw .unexpected("the old process refused: \(reason)")
        default:
            state = .failed
            throw .unexpected("\(message.name) while \(stateName)")
        }
    }

    private var stateName: String {
        switch state {
        case .awaitingListener: return "waiting for the listener"
        case .receivingConnections: return "receiving connections"
        case .finished: return "finished"
        case .failed: return "failed"
        }
    }
}

extension HandoverMessage {
    /// For error messages.
    public var name: String {
        switch self {
        case .listener: return "the listener"
        case .accepting: return "accepting"
        case .connections(let connections): return "a batch of \(connections.count) connections"
        case .done: return "done"
        case .adopted: return "adopted"
        case .refused: return "refused"
        case .clients(let clients): return "\(clients.count) clients"
        case .counters: return "the counters"
        }
    }

    /// Connections cut into batches a frame can carry: at most `maxConnections` each, and
    /// below `maxBodySize` (a connection's pending bytes are bounded well below it).
    public static func batches(_ connections: [HandedOverConnection]) -> [[HandedOverConnection]] {
        var batches: [[HandedOverConnection]] = []
        var batch: [HandedOverConnection] = []
        var size = 2
        for connection in connections {
            let added = encodedSize(of: connection)
            if batch.count == maxConnections || size + added > maxBodySize {
                batches.append(batch)
                batch = []
                size = 2
            }
            batch.append(connection)
            size += added
        }
        if !batch.isEmpty { batches.append(batch) }
        return batches
    }
}
