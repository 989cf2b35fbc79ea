import BalancerCore
import BalancerMetrics
import Logging
import NIOCore
import NIOPosix

/// `metrics ADDRESS:PORT`: Prometheus' `GET /metrics` over HTTP/1.1, one answer per
/// connection (`ScrapeRequestReader` reads the head). The body is rendered at scrape time from the status model, so the data path
/// counts nothing for it. A scraper that `acl N` refuses gets 403.
public enum MetricsServer {
    /// A scraper that has not sent its request by then is closed.
    static let requestTimeout = TimeAmount.seconds(10)
    /// How long a scraper the acl refuses (answered as it connects) has to send what it was
    /// sending: its slot is not held for `requestTimeout`.
    static let refusedLinger = TimeAmount.seconds(1)

    /// Scrapes served at once; more wait in the kernel's backlog. A scraper holds a descriptor
    /// for up to `requestTimeout`: the descriptors the data path needs are not the metrics
    /// port's to take.
    static let maxConnections = 16

    public static func start(_ endpoint: MetricsEndpoint, service: BalancerService) -> EventLoopFuture<Channel> {
        // The listener and its connections are all on the service's one loop.
        let refusals = NIOLoopBoundBox.makeBoxSendingValue(LogThrottle(), eventLoop: service.eventLoop)
        // Also the back-off when descriptors run out: NIO's accept loop would spin on the loop.
        let made = ConnectionLimiter(limit: maxConnections)
        made.warn = { service.logger.warning("metrics port: \($0)") }
        let limiter = NIOLoopBoundBox.makeBoxSendingValue(made, eventLoop: service.eventLoop)
        return ServerBootstrap(group: service.eventLoop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(limiter.value) }
            }
            .childChannelInitializer { channel in
                channel.closeFuture.assumeIsolated().whenComplete { _ in limiter.value.release() }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(MetricsHandler(service: service, acl: endpoint.acl,
                                                                                  refusals: refusals))
                }
            }
            .bind(host: endpoint.host, port: endpoint.port)
    }
}

extension BalancerService {
    /// The status model now, VRRP included: what systemd's STATUS= and the metrics render.
    /// The instances are asked on the thread pool (they read the interfaces).
    public func statusReport() -> EventLoopFuture<StatusReport> {
        blockingPool.runIfActive(eventLoop: eventLoop) { self.vrrpReports() }.map { vrrp in
            let facts = self.facts(vrrp: vrrp)
            return self.shared.withLock { $0.statusReport(facts: facts) }
        }
    }

    /// Whether the access list `acl` (as the configuration has it now) lets a scraper in. A
    /// refusal is logged through `refusals`: a scraper can be refused at will.
    func admitsScraper(from address: SocketAddress?, acl: Int?, refusals: inout LogThrottle) -> Bool {
        eventLoop.assertInEventLoop()
        guard let acl else { return true }
        guard configuration.accessLists.permits(ClientKey(address), list: acl) else {
            if let note = refusals.admitNote(now: .now()) {
                logger.warning("metrics scrape refused by acl \(acl)\(note)", metadata: ["client": "\(Endpoint.describe(address))"])
            }
            return false
        }
        return true
    }
}

/// One scrape: the request head decides, the body (if any) is ignored, the answer closes. A
/// scraper the acl refuses is answered 403 as it connects; what it sends meanwhile is read
/// (closing on unread bytes would reset the connection before the answer is read) for at
/// most `refusedLinger`.
final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let service: BalancerService
    private let acl: Int?
    /// The listener's, shared by its scrapes.
    private let refusals: NIOLoopBoundBox<LogThrottle>
    private var timeout: Scheduled<Void>?
    private var reader = ScrapeRequestReader()
    private var answered = false

    init(service: BalancerService, acl: Int?, refusals: NIOLoopBoundBox<LogThrottle>) {
        self.service = service
        self.acl = acl
        self.refusals = refusals
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        let admitted = service.admitsScraper(from: channel.remoteAddress, acl: acl, refusals: &refusals.value)
        let wait = admitted ? MetricsServer.requestTimeout : MetricsServer.refusedLinger
        timeout = context.eventLoop.scheduleTask(in: wait) { channel.close(promise: nil) }
        context.fireChannelActive()
        if !admitted {
            answered = true
            respond(context, 403, "Forbidden", "access denied\n", closing: .output)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        let method: String
        let path: String
        switch reader.read(unwrapInboundIn(data)) {
        case .incomplete:
            return
        case .malformed:
            answered = true
            return respond(context, 400, "Bad Request", "not an HTTP/1 request\n")
        case .request(let requestMethod, let requestPath):
            (method, path) = (requestMethod, requestPath)
        }
        answered = true
        guard path == "/metrics" else { return respond(context, 404, "Not Found", "only /metrics is here\n") }
        guard method == "GET" || method == "HEAD" else {
            return respond(context, 405, "Method Not Allowed", "GET /metrics\n")
        }
        let bodyWanted = method == "GET"
        service.statusReport().assumeIsolated().whenComplete { result in
            switch result {
            case .success(let report):
                let body = MetricsExposition.render(report)
                self.respond(context, 200, "OK", bodyWanted ? body : [], length: body.count,
                             contentType: "text/plain; version=0.0.4; charset=utf-8")
            case .failure:
                self.respond(context, 503, "Service Unavailable", "status unavailable\n")
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    private func respond(_ context: ChannelHandlerContext, _ status: Int, _ reason: String, _ text: String,
                         closing mode: CloseMode = .all) {
        respond(context, status, reason, Array(text.utf8), length: text.utf8.count, contentType: "text/plain; charset=utf-8",
                closing: mode)
    }

    /// Writes the answer, then closes the connection (`.output`: this side only).
    private func respond(_ context: ChannelHandlerContext, _ status: Int, _ reason: String, _ body: [UInt8], length: Int,
                         contentType: String, closing mode: CloseMode = .all) {
        let bytes = ScrapeRequestReader.response(status: status, reason: reason, contentType: contentType, body: body, length: length)
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: bytes))).assumeIsolated().whenComplete { _ in
            context.close(mode: mode, promise: nil)
        }
    }
}
