import BalancerCore
import NIOCore
import NIOPosix

/// The health checks' I/O: a timer on the balancer's event loop that starts the checks
/// `BalancerState.startDueChecks` says are due, each a non-blocking connect (and for HTTP a
/// GET and its status line) bounded by the check's timeout, and feeds the results back.
/// The schedule and the counting are the pure core's; nothing here blocks the data path.
final class HealthChecker {
    private unowned let service: BalancerService
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    private var random = SystemRandomNumberGenerator()

    init(service: BalancerService) {
        self.service = service
    }

    /// After a change of settings or servers (and at start): arms the timer for the next due check.
    func schedule() {
        service.eventLoop.assertInEventLoop()
        let now = NIODeadline.now()
        guard let due = service.shared.withLock({ $0.state.nextCheckDue(now: now) }) else {
            timer?.cancel()
            timer = nil
            timerDeadline = nil
            return
        }
        guard timerDeadline.map({ due < $0 }) ?? true else { return }
        timer?.cancel()
        timerDeadline = due
        timer = service.eventLoop.assumeIsolated().scheduleTask(deadline: due) { [self] in
            timer = nil
            timerDeadline = nil
            let jobs = service.shared.withLock { $0.state.startDueChecks(now: .now(), random: &random) }
            for job in jobs { run(job) }
            schedule()
        }
    }

    private func run(_ job: HealthCheckJob) {
        let attempt = Attempt(job: job, eventLoop: service.eventLoop)
        attempt.finished.assumeIsolated().whenSuccess { [self] result in
            if let transition = service.shared.withLock({ $0.state.recordCheck(job, result, now: .now()) }) {
                service.logger.notice("healthcheck: \(transition)")
                // bgp follows at once rather than at its next tick (a blacklisting waits for the tick).
                service.onLoop.value.bgp?.update()
            } else {
                service.logger.debug("healthcheck: server \(job.index) \(Endpoint.describe(job.address)): \(result.words)")
            }
            schedule()
        }
        let boundAttempt = NIOLoopBound(attempt, eventLoop: service.eventLoop)
        var bootstrap = ClientBootstrap(group: service.eventLoop)
            .connectTimeout(job.settings.timeout)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if job.settings.request(host: job.host, port: job.address.port ?? 0) != nil {
                        try channel.pipeline.syncOperations.addHandler(HTTPCheckHandler(attempt: boundAttempt.value))
                    }
                }
            }
        // The source address, as for the data path's connects (the same family only).
        if let source = service.configuration.sourceAddress(for: job.address) {
            bootstrap = bootstrap.bind(to: source)
        }
        bootstrap.connect(to: job.address).assumeIsolated().whenComplete { result in
            switch result {
            case .success(let channel):
                guard attempt.adopt(channel) else { return }
                if let request = job.settings.request(host: job.host, port: job.address.port ?? 0) {
                    channel.writeAndFlush(ByteBuffer(string: request), promise: nil)
                } else {
                    attempt.finish(.passed("connected"))
                }
            case .failure(ChannelError.connectTimeout):
                attempt.finish(.timeout(job.settings.timeout))
            case .failure(let error):
                let words = SystemErrorText.describe(error)
                attempt.finish(FailureCause(error).isLocal ? .inconclusive(words) : .failed(words))
            }
        }
    }

    /// One check: finishes once, with the first of its result, its timeout, its connect failure.
    fileprivate final class Attempt {
        private let promise: EventLoopPromise<HealthCheckResult>
        private var deadline: Scheduled<Void>?
        private var channel: Channel?
        private var done = false
        /// The HTTP check's judgement of the answer so far.
        let verdict: (ByteBufferView, Bool) -> HealthCheckResult?

        var finished: EventLoopFuture<HealthCheckResult> { promise.futureResult }

        init(job: HealthCheckJob, eventLoop: EventLoop) {
            promise = eventLoop.makePromise()
            verdict = { bytes, closed in job.settings.verdict(on: bytes, closed: closed) }
            deadline = eventLoop.assumeIsolated().scheduleTask(in: job.settings.timeout) { [self] in
                finish(.timeout(job.settings.timeout))
            }
        }

        /// The connected channel, closed when the check finishes; false (and closed) when it already has.
        func adopt(_ channel: Channel) -> Bool {
            self.channel = channel
            if done { channel.close(promise: nil) }
            return !done
        }

        func finish(_ result: HealthCheckResult) {
            guard !done else { return }
            done = true
            deadline?.cancel()
            channel?.close(promise: nil)
            promise.succeed(result)
        }
    }
}

/// Reads an HTTP check's answer up to its status line; the verdict is the core's.
private final class HTTPCheckHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let attempt: HealthChecker.Attempt
    private var answer = ByteBuffer()

    init(attempt: HealthChecker.Attempt) {
        self.attempt = attempt
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        // Only the status line counts: keep no more than its bound.
        let room = HealthCheckSettings.maxStatusLineLength - answer.readableBytes
        if room > 0, let slice = chunk.readSlice(length: min(room, chunk.readableBytes)) {
            answer.writeImmutableBuffer(slice)
        }
        if let result = attempt.verdict(answer.readableBytesView, false) { attempt.finish(result) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        attempt.finish(attempt.verdict(answer.readableBytesView, true) ?? .failed("malformed answer"))
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        attempt.finish(.failed(SystemErrorText.describe(error)))
    }
}
