/// Where an invoice this server issues stands. `processing`: charged, Stripe's confirmation on its way (never charged
/// again, voided or retried meanwhile).
public enum InvoiceStatus: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    case draft, open, processing, actionRequired = "action_required", overdue, paid, void, writtenOff = "written_off"

    /// Still owed and not being paid: an operator may void it.
    public var isVoidable: Bool { [.draft, .open, .actionRequired, .overdue].contains(self) }

    /// Still owed and not being paid: an operator may attempt it now.
    public var isRetryable: Bool { [.open, .actionRequired, .overdue].contains(self) }

    /// Attempted by the collection job when its next attempt is due.
    public var isCollectible: Bool { [.open, .actionRequired].contains(self) }

    /// Paid or voided: a payment arriving afterwards is recorded and reported, and changes nothing. (A written-off
    /// invoice may still be paid late.)
    public var isSettled: Bool { [.paid, .void].contains(self) }

    /// Where an invoice in this status may go next. Only these moves are made; anything else is a bug, refused by
    /// `moved(to:)`.
    /// - `open` is attempted (`processing`, `action_required` when the bank asks for authentication, `overdue` after
    ///   the last failure), or paid through its payment link, or voided;
    /// - `processing` waits for Stripe's confirmation: only `paid` follows;
    /// - `overdue` is retried by an operator (`open` again, then attempted), written off, paid late, or voided;
    /// - a written-off invoice may still be paid late; `paid` and `void` are final.
    public var next: Set<InvoiceStatus> {
        switch self {
        case .draft: [.open, .paid, .void]
        case .open: [.processing, .actionRequired, .overdue, .paid, .void]
        case .actionRequired: [.processing, .actionRequired, .overdue, .paid, .void]
        case .processing: [.paid]
        case .overdue: [.open, .writtenOff, .paid, .void]
        case .writtenOff: [.paid]
        case .paid, .void: []
        }
    }

    /// `next`, checked: the status after a move, or an error naming the move that is not allowed.
    public func moved(to next: InvoiceStatus) throws(InvoiceTransitionError) -> InvoiceStatus {
        guard self.next.contains(next) else { throw InvoiceTransitionError(from: self, to: next) }
        return next
    }

    /// As stored and as the API spells it (`action_required`), in messages too.
    public var description: String { rawValue }
}

/// A move between invoice statuses that `InvoiceStatus.next` does not allow.
public struct InvoiceTransitionError: Error, Sendable, Equatable, CustomStringConvertible {
    public var from: InvoiceStatus
    public var to: InvoiceStatus

    public init(from: InvoiceStatus, to: InvoiceStatus) {
        self.from = from
        self.to = to
    }

    public var description: String { "an invoice that is \(from) cannot become \(to)" }
}
