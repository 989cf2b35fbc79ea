import BalancerCore
import BalancerMetrics
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// `metrics ADDRESS:PORT`: Prometheus' `GET /metrics` over HTTP/1.1, one answer per
/// connection. The body is rendered at scrape time from the status model, so the data path
/// counts nothing for it. A scraper that `acl N` refuses gets 403.
public enum MetricsServer {
    /// A scraper that has not sent its request by then is closed.
    static let requestTimeout = TimeAmount.seconds(10)

    public static func start(_ endpoint: MetricsEndpoint, service: BalancerService) -> EventLoopFuture<Channel> {
        // The listener and its connections are all on the service's one loop.
        let refusals = NIOLoopBoundBox.makeBoxSendingValue(LogThrottle(), eventLoop: service.eventLoop)
        return ServerBootstrap(group: service.eventLoop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: false, withErrorHandling: true)
                    try pipeline.addHandler(MetricsHandler(service: service, acl: endpoint.acl, refusals: refusals))
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

/// One scrape: the request head decides, the body (if any) is ignored, the answer closes.
final class MetricsHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let service: BalancerService
    private let acl: Int?
    /// The listener's, shared by its scrapes.
    private let refusals: NIOLoopBoundBox<LogThrottle>
    private var timeout: Scheduled<Void>?
    private var answered = false

    init(service: BalancerService, acl: Int?, refusals: NIOLoopBoundBox<LogThrottle>) {
        self.service = service
        self.acl = acl
        self.refusals = refusals
    }

    func channelActive(context: ChannelHandlerContext) {
        let channel = context.channel
        timeout = context.eventLoop.scheduleTask(in: MetricsServer.requestTimeout) { channel.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timeout?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data), !answered else { return }
        answered = true
        guard service.admitsScraper(from: context.channel.remoteAddress, acl: acl, refusals: &refusals.value) else {
            return respond(context, .forbidden, "access denied\n")
        }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        guard path == "/metrics" else { return respond(context, .notFound, "only /metrics is here\n") }
        guard head.method == .GET || head.method == .HEAD else {
            return respond(context, .methodNotAllowed, "GET /metrics\n")
        }
        let bodyWanted = head.method == .GET
        service.statusReport().assumeIsolated().whenComplete { result in
            switch result {
            case .success(let report):
                let body = MetricsExposition.render(report)
                self.respond(context, .ok, bodyWanted ? body : [], length: body.count,
                             contentType: "text/plain; version=0.0.4; charset=utf-8")
            case .failure:
                self.respond(context, .serviceUnavailable, "status unavailable\n")
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    private func respond(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ text: String) {
        respond(context, status, Array(text.utf8), length: text.utf8.count, contentType: "text/plain; charset=utf-8")
    }

    private func respond(_ context: ChannelHandlerContext, _ status: HTTPResponseStatus, _ body: [UInt8], length: Int,
                         contentType: String) {
        let headers = HTTPHeaders([("Content-Type", contentType), ("Content-Length", "\(length)"), ("Connection", "close")])
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
        if !body.isEmpty { context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil) }
        context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}
