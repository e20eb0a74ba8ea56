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

    /// As stored and as the API spells it (`action_required`), in messages too.
    public var description: String { rawValue }
}
