// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "billing-server",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "billingd", targets: ["billingd"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.0.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        // Tests only: whole JSON answers pinned as snapshots.
        .package(url: "https://github.com/pointfreeco/swift-snapshot-testing.git", from: "1.19.7"),
        // Dev and tests only: running helper programs (pg_dump, the tests' Python scripts, billingd's commands).
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
    ],
    targets: [
        // Pure domain: plans, seats, money, entitlement. Foundation only.
        .target(name: "BillingCore"),
        // JSON-RPC 2.0 wire types and the method registry; knows nothing of billing.
        .target(name: "JSONRPC"),
        // Stripe client (form encoding, idempotency keys, retries, error envelope) and webhook signatures.
        .target(
            name: "StripeAPI",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            resources: [.copy("Resources/stripe-definitions.json")]
        ),
        // A local stand-in for the Stripe API subset the product uses, with a hosted Checkout page that signs and
        // delivers webhooks.
        .target(
            name: "StripeStandIn",
            dependencies: [
                "BillingCore",
                "StripeAPI",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Mustache", package: "swift-mustache"),
            ]
        ),
        .target(
            name: "BillingStore",
            dependencies: [
                "BillingCore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "Billing",
            dependencies: [
                "BillingCore", "BillingStore", "JSONRPC", "StripeAPI",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "BillingServer",
            dependencies: [
                "Billing", "BillingCore", "BillingStore", "JSONRPC", "StripeAPI",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Mustache", package: "swift-mustache"),
            ]
        ),
        .executableTarget(
            name: "billingd",
            dependencies: [
                // BillingServer for everything; the stand-in and the dev support module for `billingd dev` and
                // `billingd stand-in` only.
                "BillingServer", "StripeStandIn", "BillingDevSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // For development and tests only: local PostgreSQL clusters (`billingd dev`, and one per test run with a
        // fresh, migrated database per suite), child processes, free ports.
        .target(
            name: "BillingDevSupport",
            dependencies: [
                "BillingStore",
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "BillingCoreTests", dependencies: ["BillingCore"]),
        .testTarget(name: "JSONRPCTests", dependencies: ["JSONRPC"]),
        .testTarget(
            name: "StripeAPITests",
            dependencies: [
                "StripeAPI", "StripeStandIn", "BillingDevSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(
            name: "BillingStoreTests",
            dependencies: [
                "BillingStore", "BillingDevSupport",
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        .testTarget(
            name: "BillingServerTests",
            dependencies: [
                "BillingServer", "BillingStore", "Billing", "BillingCore", "JSONRPC", "BillingDevSupport",
                "StripeAPI", "StripeStandIn",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SnapshotTesting", package: "swift-snapshot-testing"),
            ],
            exclude: ["Fixtures", "__Snapshots__"]
        ),
    ]
)
