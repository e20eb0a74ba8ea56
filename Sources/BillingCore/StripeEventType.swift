/// The Stripe event types this server handles, one case each: the dispatcher switches over them exhaustively, so a
/// type added here without a handler does not compile, and every other type is stored, acknowledged and ignored.
public enum StripeEventType: String, CaseIterable, Sendable {
    case checkoutSessionCompleted = "checkout.session.completed"
    case checkoutSessionAsyncPaymentSucceeded = "checkout.session.async_payment_succeeded"
    case checkoutSessionExpired = "checkout.session.expired"
    case checkoutSessionAsyncPaymentFailed = "checkout.session.async_payment_failed"
    case paymentIntentSucceeded = "payment_intent.succeeded"
    case paymentIntentPaymentFailed = "payment_intent.payment_failed"
    case paymentIntentCanceled = "payment_intent.canceled"
    case paymentIntentProcessing = "payment_intent.processing"
    case chargeSucceeded = "charge.succeeded"
    case chargeRefunded = "charge.refunded"
    case refundCreated = "refund.created"
    case refundUpdated = "refund.updated"
    case refundFailed = "refund.failed"
    case chargeRefundUpdated = "charge.refund.updated"
    case chargeDisputeCreated = "charge.dispute.created"
    case chargeDisputeUpdated = "charge.dispute.updated"
    case chargeDisputeClosed = "charge.dispute.closed"
    case customerSubscriptionCreated = "customer.subscription.created"
    case customerSubscriptionUpdated = "customer.subscription.updated"
    case customerSubscriptionDeleted = "customer.subscription.deleted"
    case customerSubscriptionPaused = "customer.subscription.paused"
    case customerSubscriptionResumed = "customer.subscription.resumed"
    case customerSubscriptionTrialWillEnd = "customer.subscription.trial_will_end"
    case customerSubscriptionPendingUpdateApplied = "customer.subscription.pending_update_applied"
    case customerSubscriptionPendingUpdateExpired = "customer.subscription.pending_update_expired"
    case invoicePaid = "invoice.paid"
    case invoicePaymentSucceeded = "invoice.payment_succeeded"
    case invoicePaymentFailed = "invoice.payment_failed"
    case invoicePaymentActionRequired = "invoice.payment_action_required"
    case invoiceFinalized = "invoice.finalized"
    case invoiceVoided = "invoice.voided"
    case invoiceMarkedUncollectible = "invoice.marked_uncollectible"
    case invoiceUpdated = "invoice.updated"
    case invoiceOverdue = "invoice.overdue"
    case invoiceFinalizationFailed = "invoice.finalization_failed"
    case invoicePaymentPaid = "invoice_payment.paid"
    case customerDeleted = "customer.deleted"
    case customerUpdated = "customer.updated"
    case setupIntentSucceeded = "setup_intent.succeeded"
    case setupIntentSetupFailed = "setup_intent.setup_failed"
    case paymentMethodDetached = "payment_method.detached"
    case paymentMethodAutomaticallyUpdated = "payment_method.automatically_updated"
    case subscriptionScheduleCreated = "subscription_schedule.created"
    case subscriptionScheduleUpdated = "subscription_schedule.updated"
    case subscriptionScheduleReleased = "subscription_schedule.released"
    case subscriptionScheduleCanceled = "subscription_schedule.canceled"
    case subscriptionScheduleCompleted = "subscription_schedule.completed"
    case subscriptionScheduleAborted = "subscription_schedule.aborted"

    /// The object family whose handler applies an event of this type.
    public var family: Family {
        switch self {
        case .checkoutSessionCompleted, .checkoutSessionAsyncPaymentSucceeded: .checkoutCompleted
        case .checkoutSessionExpired, .checkoutSessionAsyncPaymentFailed: .checkoutClosed
        case .paymentIntentSucceeded: .paymentIntentSucceeded
        case .paymentIntentPaymentFailed: .paymentIntentFailed
        case .paymentIntentCanceled: .paymentIntentCanceled
        case .paymentIntentProcessing: .paymentIntentProcessing
        case .chargeSucceeded: .chargeSucceeded
        case .chargeRefunded: .chargeRefunded
        case .refundCreated, .refundUpdated, .refundFailed, .chargeRefundUpdated: .refund
        case .chargeDisputeCreated, .chargeDisputeUpdated, .chargeDisputeClosed: .dispute
        case .customerSubscriptionCreated, .customerSubscriptionUpdated, .customerSubscriptionDeleted, .customerSubscriptionPaused,
             .customerSubscriptionResumed, .customerSubscriptionTrialWillEnd, .customerSubscriptionPendingUpdateApplied,
             .customerSubscriptionPendingUpdateExpired: .subscription
        case .invoicePaid, .invoicePaymentSucceeded, .invoicePaymentFailed, .invoicePaymentActionRequired, .invoiceFinalized,
             .invoiceVoided, .invoiceMarkedUncollectible, .invoiceUpdated, .invoiceOverdue, .invoiceFinalizationFailed: .invoice
        case .invoicePaymentPaid: .invoicePayment
        case .customerDeleted: .customerDeleted
        case .customerUpdated: .customerUpdated
        case .setupIntentSucceeded: .setupSucceeded
        case .setupIntentSetupFailed: .setupFailed
        case .paymentMethodDetached: .paymentMethodDetached
        case .paymentMethodAutomaticallyUpdated: .paymentMethodUpdated
        case .subscriptionScheduleCreated, .subscriptionScheduleUpdated, .subscriptionScheduleReleased, .subscriptionScheduleCanceled,
             .subscriptionScheduleCompleted, .subscriptionScheduleAborted: .schedule
        }
    }

    /// One handler each.
    public enum Family: Sendable, CaseIterable {
        case checkoutCompleted, checkoutClosed, paymentIntentSucceeded, paymentIntentFailed, paymentIntentCanceled, paymentIntentProcessing
        case chargeSucceeded, chargeRefunded, refund, dispute, subscription, invoice, invoicePayment, customerDeleted, customerUpdated
        case setupSucceeded, setupFailed, paymentMethodDetached, paymentMethodUpdated, schedule
    }
}
