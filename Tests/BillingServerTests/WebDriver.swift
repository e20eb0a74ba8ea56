import AsyncHTTPClient
import BillingStore
import BillingDevSupport
import Foundation
import JSONRPC
import NIOCore

/// A small W3C WebDriver client for Debian's `chromedriver` driving headless Chromium: enough to open pages, find,
/// click and type, run a line of script and take screenshots. Each call is one HTTP request to the driver.
struct Browser: Sendable {
    static let chromedriver = "/usr/bin/chromedriver"
    static let chromium = "/usr/bin/chromium"
    static let elementKey = "element-6066-11e4-a52e-4f735466cecf"

    let driver: String
    let session: String

    enum Verb: String, Sendable {
        case GET, POST, DELETE
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Whether this machine has the browser (`scripts/install-deps.sh browser` installs it).
    static var isInstalled: Bool {
        FileManager.default.isExecutableFile(atPath: chromedriver) && FileManager.default.isExecutableFile(atPath: chromium)
    }

    /// Starts chromedriver and one headless Chromium session, runs `body`, and ends both whatever happens.
    static func withSession<T: Sendable>(
        width: Int = 1024, height: Int = 1400, _ body: @Sendable (Browser) async throws -> T
    ) async throws -> T {
        let port = try freeLocalPort()
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("chromedriver-\(port).log")
        let process = try ChildProcess.spawn(
            [chromedriver, "--port=\(port)", "--allowed-ips=127.0.0.1"], environment: ["PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory()],
            stdoutPath: log.path)
        defer {
            process.signal(SIGKILL)  // chromedriver may outlive SIGTERM; its browser has already quit with the session
            _ = process.wait()
        }
        let driver = "http://127.0.0.1:\(port)"
        try await waitUntilReady(driver, log: log)
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("chromium-profile-\(UUID())")
        defer { try? FileManager.default.removeItem(at: profile) }
        let created = try await call(driver, .POST, "/session", [
            "capabilities": ["alwaysMatch": [
                "browserName": "chrome",
                "goog:chromeOptions": [
                    "binary": .string(chromium),
                    "args": [
                        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                        "--lang=en-US", .string("--window-size=\(width),\(height)"), .string("--user-data-dir=\(profile.path)"),
                    ],
                ],
            ]],
        ])
        guard let session = created["sessionId"]?.stringValue else { throw Failure(description: "no WebDriver session: \(created)") }
        let browser = Browser(driver: driver, session: session)
        do {
            let result = try await body(browser)
            _ = try? await call(driver, .DELETE, "/session/\(session)", nil)
            return result
        } catch {
            _ = try? await call(driver, .DELETE, "/session/\(session)", nil)
            throw error
        }
    }

    static func waitUntilReady(_ driver: String, log: URL) async throws {
        for _ in 0..<100 {
            if let status = try? await call(driver, .GET, "/status", nil), status["ready"] == .bool(true) { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw Failure(description: "chromedriver did not start: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
    }

    /// One WebDriver command; its `value`.
    @discardableResult
    static func call(_ driver: String, _ method: Verb, _ path: String, _ body: JSONValue?) async throws -> JSONValue {
        var request = HTTPClientRequest(url: driver + path)
        switch method {
        case .GET: request.method = .GET
        case .POST: request.method = .POST
        case .DELETE: request.method = .DELETE
        }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 32 << 20)
        let answer = try JSONDecoder().decode(JSONValue.self, from: Data(buffer: bytes))
        let value = answer["value"] ?? .null
        if response.status.code >= 400 || value["error"] != nil {
            throw Failure(description: "WebDriver \(method) \(path): \(value["error"]?.stringValue ?? "") \(value["message"]?.stringValue ?? "\(value)")")
        }
        return value
    }

    @discardableResult
    func call(_ method: Verb, _ path: String, _ body: JSONValue? = nil) async throws -> JSONValue {
        try await Self.call(driver, method, "/session/\(session)\(path)", body)
    }

    // MARK: Pages

    func open(_ url: String) async throws {
        try await call(.POST, "/url", ["url": .string(url)])
    }

    func currentURL() async throws -> String {
        try await call(.GET, "/url").stringValue ?? ""
    }

    func setWindow(width: Int, height: Int) async throws {
        try await call(.POST, "/window/rect", ["width": .integer(width), "height": .integer(height)])
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and returns what it returns.
    @discardableResult
    func run(_ script: String, _ args: [JSONValue] = []) async throws -> JSONValue {
        try await call(.POST, "/execute/sync", ["script": .string(script), "args": .array(args)])
    }

    /// Saves a PNG of the viewport.
    func screenshot(to file: URL) async throws {
        let encoded = try await call(.GET, "/screenshot").stringValue ?? ""
        guard let png = Data(base64Encoded: encoded) else { throw Failure(description: "the screenshot was not base64") }
        try FileManager.default.createDirectory(at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
        try png.write(to: file)
    }

    // MARK: Elements

    struct Element: Sendable {
        let browser: Browser
        let id: String

        func click() async throws { try await browser.call(.POST, "/element/\(id)/click", [:]) }
        func clear() async throws { try await browser.call(.POST, "/element/\(id)/clear", [:]) }
        /// Types `text` into the element; `Key` values are keys such as Enter and Tab.
        func type(_ text: String) async throws { try await browser.call(.POST, "/element/\(id)/value", ["text": .string(text)]) }
        func text() async throws -> String { try await browser.call(.GET, "/element/\(id)/text").stringValue ?? "" }
        func property(_ name: String) async throws -> JSONValue { try await browser.call(.GET, "/element/\(id)/property/\(name)") }
    }

    enum Key {
        static let enter = "\u{E007}"
        static let tab = "\u{E004}"
    }

    /// The elements that match a CSS selector, in document order.
    func elements(_ selector: String) async throws -> [Element] {
        let found = try await call(.POST, "/elements", ["using": "css selector", "value": .string(selector)])
        guard case .array(let items) = found else { return [] }
        return items.compactMap { $0[Self.elementKey]?.stringValue }.map { Element(browser: self, id: $0) }
    }

    func element(_ selector: String) async throws -> Element {
        guard let first = try await elements(selector).first else { throw Failure(description: "no element matches \(selector)") }
        return first
    }

    func activeElement() async throws -> Element {
        guard let id = try await call(.GET, "/element/active")[Self.elementKey]?.stringValue else {
            throw Failure(description: "no element has the focus")
        }
        return Element(browser: self, id: id)
    }

    /// Polls (every 100 ms, up to `timeout`) until `condition` holds; the failure names what was awaited and the page's
    /// visible text at the end.
    func wait(
        _ what: String, timeout: Duration = .seconds(20), until condition: @Sendable (Browser) async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if (try? await condition(self)) == true { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        let text = (try? await run("return document.body ? document.body.innerText : ''").stringValue) ?? ""
        throw Failure(description: "waited \(timeout) for \(what); at \((try? await currentURL()) ?? "?") the page reads:\n\(text ?? "")")
    }

    /// Waits until the element's visible text contains `fragment`; returns the whole text.
    @discardableResult
    func waitForText(_ selector: String, containing fragment: String, timeout: Duration = .seconds(20)) async throws -> String {
        try await wait("\(selector) to read '\(fragment)'", timeout: timeout) { browser in
            try await browser.element(selector).text().contains(fragment)
        }
        return try await element(selector).text()
    }
}
