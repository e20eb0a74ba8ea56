import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes

/// Closes a connection whose request head has not arrived `head` after its first bytes did, or whose body has not
/// arrived `body` after its head. The idle timeout alone cannot: a client trickling one byte every few seconds is
/// never idle, and would hold a connection (and a task) for as long as it likes.
final class RequestDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    enum State {
        /// Between requests: nothing of the next one has arrived, as far as this handler can tell.
        case waiting
        /// Bytes arrived that did not make a head yet (the decoder holds them).
        case readingHead
        case readingBody
        case handling
    }

    let head: TimeAmount
    let body: TimeAmount
    let logger: Logger
    var state = State.waiting
    var decodedThisRead = false
    var deadline: Scheduled<Void>?

    init(head: TimeAmount, body: TimeAmount, logger: Logger) {
        self.head = head
        self.body = body
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        decodedThisRead = true
        switch unwrapInboundIn(data) {
        case .head:
            arm(context, after: body, state: .readingBody, reason: "its body")
        case .body:
            break
        case .end:
            disarm(state: .handling)
        }
        context.fireChannelRead(data)
    }

    /// A read that decoded nothing brought part of a head: the head's deadline starts with the first such read.
    func channelReadComplete(context: ChannelHandlerContext) {
        if !decodedThisRead, state == .waiting || state == .handling {
            arm(context, after: head, state: .readingHead, reason: "its head")
        }
        decodedThisRead = false
        context.fireChannelReadComplete()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    private func arm(_ context: ChannelHandlerContext, after limit: TimeAmount, state: State, reason: String) {
        deadline?.cancel()
        self.state = state
        let channel = context.channel
        let logger = logger
        deadline = context.eventLoop.scheduleTask(in: limit) {
            logger.notice("closing a connection that did not send a request's \(reason) in time", metadata: [
                "limit_ms": "\(limit.nanoseconds / 1_000_000)",
            ])
            channel.close(promise: nil)
        }
    }

    private func disarm(state: State) {
        deadline?.cancel()
        deadline = nil
        self.state = state
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with an idle timeout, and deadlines for each request's head and body.
    static func http1(idleTimeout: Duration, headTimeout: Duration, bodyTimeout: Duration, logger: Logger) -> HTTPServerBuilder {
        let head = TimeAmount(headTimeout), body = TimeAmount(bodyTimeout)
        return HTTPServerBuilder { responder in
            HTTP1Channel(responder: responder, configuration: .init(
                additionalChannelHandlers: [RequestDeadlineHandler(head: head, body: body, logger: logger)],
                idleTimeout: TimeAmount(idleTimeout)))
        }
    }
}
