import BillingServer
import Configuration
import Logging
import Testing

/// Lists and typed values are read by swift-configuration; one that is set but does not read as its type is an error
/// that names the variable, never a silent default.
@Suite struct ConfigurationTests {
    static func load(_ environment: [String: String]) throws -> BillingConfiguration {
        try BillingConfiguration(reader: ConfigReader(provider: EnvironmentVariablesProvider(environmentVariables: environment)))
    }

    @Test func listsAreSplitOnCommasAndTrimmed() throws {
        let configuration = try Self.load([
            "BILLING_JWT_SECRET": " first-secret-of-thirty-two-characters ,second-secret-of-thirty-two-characters,",
            "STRIPE_WEBHOOK_SECRETS": "whsec_a, whsec_b", "BILLING_DUNNING_SCHEDULE_DAYS": "2, 4,8",
            "BILLING_LOG_LEVEL": "debug",
        ])
        #expect(configuration.jwtSecrets == ["first-secret-of-thirty-two-characters", "second-secret-of-thirty-two-characters"])
        #expect(configuration.webhookSecrets == ["whsec_a", "whsec_b"])
        #expect(configuration.dunningDays == [2, 4, 8])
        #expect(configuration.logLevel == .debug)
    }

    @Test func defaultsWhenUnset() throws {
        let configuration = try Self.load([:])
        #expect(configuration.jwtSecrets.isEmpty && configuration.webhookSecrets.isEmpty)
        #expect(configuration.dunningDays == [1, 3, 5, 7])
        #expect(configuration.logLevel == .info)
    }

    @Test(arguments: [
        ("BILLING_LOG_LEVEL", "loud", "BILLING_LOG_LEVEL is invalid: use trace, debug"),
        ("BILLING_DUNNING_SCHEDULE_DAYS", "1,x,5", "BILLING_DUNNING_SCHEDULE_DAYS is invalid: give whole days"),
        ("BILLING_DUNNING_SCHEDULE_DAYS", "5,3", "BILLING_DUNNING_SCHEDULE_DAYS is invalid: give ascending whole days"),
    ])
    func aValueOfTheWrongTypeIsAnError(name: String, value: String, message: String) {
        let error = #expect(throws: ConfigurationError.self) { try Self.load([name: value]) }
        #expect(error?.description.hasPrefix(message) == true, "\(error?.description ?? "no error")")
    }
}
