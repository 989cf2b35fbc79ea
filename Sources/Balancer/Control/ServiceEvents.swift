import BalancerCore
import Engine
import Logging
import NIOCore
import Synchronization

/// What the engine's threads tell the service: log lines through the service's logger (its
/// level as the last `debug` command set it) and the connection log.
final class ServiceEvents: EngineEvents {
    private let logger: Mutex<Logger>
    /// The logger's level, asked on every connection (debug lines): read without the lock.
    private let logsDebug: Atomic<Bool>
    private let connectionLog: ConnectionLog

    init(logger: Logger, connectionLog: ConnectionLog) {
        self.logger = Mutex(logger)
        logsDebug = Atomic(logger.logLevel <= .debug)
        self.connectionLog = connectionLog
    }

    /// The service's logger changed (its level, with `debug N`).
    func adopt(_ logger: Logger) {
        self.logger.withLock { $0 = logger }
        logsDebug.store(logger.logLevel <= .debug, ordering: .relaxed)
    }

    func isLogged(_ level: EngineLogLevel) -> Bool {
        level == .debug ? logsDebug.load(ordering: .relaxed) : logger.withLock { $0.logLevel } <= Self.level(level)
    }

    func log(_ level: EngineLogLevel, _ message: String, _ metadata: [String: String]) {
        let logger = self.logger.withLock { $0 }
        logger.log(level: Self.level(level), "\(message)", metadata: metadata.mapValues { .string($0) })
    }

    var logsConnections: Bool { connectionLog.isOn }

    func logConnection(client: ClientKey, server: SocketAddress?, request: [UInt8]) {
        connectionLog.record(client: client.clientText, server: ConnectionLog.logAddress(server), request: request,
                             logger: logger.withLock { $0 })
    }

    private static func level(_ level: EngineLogLevel) -> Logger.Level {
        switch level {
        case .debug: return .debug
        case .info: return .info
        case .warning: return .warning
        }
    }
}
