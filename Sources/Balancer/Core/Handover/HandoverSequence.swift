import VRRPCore

/// The order of a handover, as each side checks it: pure values, messages in, what to do out.
/// The old process: `listener`, wait for `accepting`, `clients`, `connections`, `counters`,
/// `bgpWithdrawn` if the operator's hold is on, `done`, wait for `adopted`, `vrrp`. The new one: the mirror image. Anything else is refused, and a refused
/// handover leaves the old process serving.
public struct HandoverReception: Sendable {
    private enum State: Sendable {
        case awaitingListener
        case receivingConnections(count: Int)
        /// `done` came; the VRRP instances come once `adopted` is sent.
        case awaitingVRRP
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
        /// Keep the BGP routes withdrawn, as the operator asked the old process.
        case holdBGPWithdrawn
        /// The connections came: send `adopted`.
        case adopted(connections: Int)
        /// Go on with these VRRP instances where they stood: the handover is over.
        case resumeVRRP([VRRPResumption])
    }

    private var state = State.awaitingListener

    public init() {}

    /// `done` came: everything but the VRRP instances.
    public var isAdopted: Bool {
        switch state {
        case .awaitingVRRP, .finished: return true
        case .awaitingListener, .receivingConnections, .failed: return false
        }
    }

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
        case (.receivingConnections, .bgpWithdrawn):
            return .holdBGPWithdrawn
        case (.receivingConnections(let count), .done):
            state = .awaitingVRRP
            return .adopted(connections: count)
        case (.awaitingVRRP, .vrrp(let instances)):
            state = .finished
            return .resumeVRRP(instances)
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
        case .awaitingVRRP: return "waiting for the VRRP instances"
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
        case .vrrp(let instances): return "\(instances.count) VRRP instances"
        case .bgpWithdrawn: return "bgp withdrawn"
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
