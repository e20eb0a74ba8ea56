"""Stripe's official Python library against the stand-in: create a customer and a Checkout Session, and parse them.

Usage: python official_client.py BASE_URL; prints the parsed fields as JSON.
"""
import json
import sys

import stripe

client = stripe.StripeClient("sk_test_official_library", base_addresses={"api": sys.argv[1]}, max_network_retries=0)
customer = client.v1.customers.create(params={
    "email": "official@acme.example", "name": "Official", "metadata": {"tenant_id": "t-official"},
})
session = client.v1.checkout.sessions.create(params={
    "mode": "subscription",
    "customer": customer.id,
    "client_reference_id": "t-official",
    "success_url": "https://billing.example/billing?checkout={CHECKOUT_SESSION_ID}",
    "line_items": [{"price": "price_team_month", "quantity": 3}],
    "metadata": {"tenant_id": "t-official", "plan": "team", "purpose": "subscription"},
    "subscription_data": {"metadata": {"tenant_id": "t-official", "plan": "team"}, "trial_period_days": 14},
})
fetched = client.v1.checkout.sessions.retrieve(session.id)
print(json.dumps({
    "customer": customer.id,
    "customer_object": customer.object,
    "tenant": customer.metadata["tenant_id"],
    "session": session.id,
    "session_object": session.object,
    "url": session.url,
    "amount_total": session.amount_total,
    "fetched_status": fetched.status,
    "fetched_customer": fetched.customer,
}))
