import Foundation
import Mustache

/// The stand-in's hosted pages (Checkout, 3-D Secure, the portal) as Mustache templates, which escape every value
/// they show. They live in the binary, so `billingd stand-in` needs no files beside it.
enum Pages {
    static let library: MustacheLibrary = {
        var library = MustacheLibrary()
        for (name, text) in templates {
            do {
                try library.register(text, named: name)
            } catch {
                preconditionFailure("the stand-in's template '\(name)' does not parse: \(error)")
            }
        }
        return library
    }()

    /// `template` rendered with `view`, inside the page layout titled `title`.
    static func render(_ template: String, title: String, _ view: [String: Any] = [:]) -> String {
        let content = library.render(view, withTemplate: template) ?? ""
        return library.render(["title": title, "content": content], withTemplate: "layout") ?? content
    }

    static let templates: [String: String] = [
        "layout": """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>{{title}}</title>
            <style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem}
            button{display:block;width:100%;margin:.5rem 0;padding:.7rem;font-size:1rem}
            .notice{background:#fee;border:1px solid #c33;padding:.5rem}</style></head>
            <body><p><strong>Stripe stand-in</strong> · test mode</p>{{{content}}}</body></html>
            """,
        "message": "<p>{{text}}</p>",
        "notice": #"{{#notice}}<p class="notice" role="{{role}}">{{notice}}</p>{{/notice}}"#,
        "invoice": """
            <h1>Invoice {{number}}</h1>{{> notice}}
            <p>Status: {{status}}</p>
            {{#open}}<p>Amount due: {{due}}</p>
            <form method="post">
              <button name="card" value="succeeds" id="pay">Pay with 4242 4242 4242 4242 (succeeds)</button>
              <button name="card" value="declines" id="decline">Pay with 4000 0000 0000 0002 (declined)</button>
            </form>{{/open}}
            """,
        "checkout-closed": "<h1>Checkout</h1>{{> notice}}<p>This session is {{status}}.</p>",
        "checkout": """
            <h1>Checkout</h1>{{> notice}}
            <ul>{{#lines}}<li>{{.}}</li>{{/lines}}</ul>
            <p>Total: <strong id="total">{{total}}</strong>{{#recurring}} per period{{/recurring}}</p>
            {{#trial}}<p id="trial">{{trial}}</p>{{/trial}}
            <form method="post" action="/checkout/{{id}}">
              <button name="outcome" value="pay" id="pay">Pay with 4242 4242 4242 4242 (succeeds)</button>
              <button name="outcome" value="decline" id="decline">Pay with 4000 0000 0000 0002 (declined)</button>
              <button name="outcome" value="authenticate" id="authenticate">Pay with 4000 0025 0000 3155 (3-D Secure)</button>
              <button name="outcome" value="disputed" id="disputed">Pay with 4000 0000 0000 0259 (disputed at once)</button>
              <button name="outcome" value="cancel" id="cancel">Cancel and go back</button>
            </form>
            """,
        "setup": """
            <h1>Save a card for future payments</h1>{{> notice}}
            <form method="post" action="/checkout/{{id}}">
              <button name="outcome" value="pay" id="pay">Save 4242 4242 4242 4242 (payments succeed)</button>
              <button name="outcome" value="saveDeclining" id="save-declining">Save 4000 0000 0000 0341 (payments declined)</button>
              <button name="outcome" value="authenticate" id="authenticate">Save 4000 0027 6000 3184 (payments need authentication)</button>
              <button name="outcome" value="cancel" id="cancel">Cancel and go back</button>
            </form>
            """,
        "challenge": """
            <h1>3-D Secure</h1><p>Your bank asks you to confirm this payment.</p>
            <form method="post" action="/checkout/{{id}}">
              <button name="outcome" value="authenticated" id="complete-authentication">Complete authentication</button>
              <button name="outcome" value="authentication_failed" id="fail-authentication">Fail authentication</button>
            </form>
            """,
        "portal": """
            <h1>Billing portal</h1>{{> notice}}
            {{#subscriptions}}
            <section><h2>{{productName}}</h2>
            <p>Status: {{status}}{{#cancelAtPeriodEnd}} (cancels at period end){{/cancelAtPeriodEnd}}. Seats: <span id="seats">{{quantity}}</span></p>
            <form method="post" action="/portal/{{id}}"><input type="hidden" name="subscription" value="{{subscriptionID}}">
            <label>Seats <input name="value" type="number" min="1" value="{{quantity}}"></label>
            <button name="action" value="seats" id="change-seats">Change seats</button></form>
            <form method="post" action="/portal/{{id}}"><input type="hidden" name="subscription" value="{{subscriptionID}}">
            <label>Plan <select name="value">{{#prices}}<option value="{{priceID}}"{{#selected}} selected{{/selected}}>{{productName}} per {{interval}}</option>{{/prices}}</select></label>
            <button name="action" value="price" id="switch-plan">Switch plan</button></form>
            <form method="post" action="/portal/{{id}}"><input type="hidden" name="subscription" value="{{subscriptionID}}">
            {{#cancelAtPeriodEnd}}<button name="action" value="renew" id="renew">Don't cancel</button>{{/cancelAtPeriodEnd}}
            {{^cancelAtPeriodEnd}}<button name="action" value="cancel" id="cancel">Cancel at period end</button>{{/cancelAtPeriodEnd}}</form>
            </section>
            {{/subscriptions}}
            {{^subscriptions}}<p>No subscriptions.</p>{{/subscriptions}}
            {{#returnURL}}<p><a id="return" href="{{returnURL}}">Return to the product</a></p>{{/returnURL}}
            """,
    ]
}
