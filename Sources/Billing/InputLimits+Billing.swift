import JSONRPC

extension BillingAPI {
    /// The longest value each string param may have, on every method (`/rpc` and `/trpc`), checked before the
    /// method runs; the README lists them. Any other string may have 1,000 characters, a list 100 entries, and
    /// params nest at most 8 levels. `limit` params are 1 to 200 where they are read.
    public static let inputLimits = InputLimits(
        stringLengths: [
            "name": 200, "email": 254, "reason": 500, "description": 200, "query": 200,
            "idempotencyKey": 255, "cursor": 200, "sessionId": 255,
            "tenantId": 64, "invoiceId": 64, "paymentId": 255,
            "plan": 64, "interval": 16, "returnUrl": 2048,
        ],
        defaultStringLength: 1000, listLength: 100, depth: 8)
}
