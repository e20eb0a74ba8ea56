-- Atomic phases (Stripe's pattern for idempotent multi-step work): a method that calls Stripe records what it is
-- about to do in a short transaction (the intent), calls Stripe with no transaction or row lock held, under a key
-- derived from the intent, and records the outcome in a second short transaction. A slow Stripe no longer holds a
-- tenant's row lock or a pooled connection. A repeat of the same request finds the intent still `started` and
-- re-sends its key (Stripe answers with the first result); an intent older than Stripe keeps keys for is settled by
-- reading Stripe instead. `subject`: what the intent changes; at most one intent per tenant and subject is started
-- for subscription changes (`exclusive`), one per request for Checkout Sessions.
CREATE TABLE stripe_intents (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    id uuid NOT NULL,
    subject text NOT NULL,
    operation text NOT NULL,
    request text NOT NULL,
    exclusive boolean NOT NULL,
    plan jsonb NOT NULL,
    status text NOT NULL DEFAULT 'started' CHECK (status IN ('started', 'succeeded', 'failed', 'abandoned')),
    outcome text,
    created_at timestamptz NOT NULL,
    finished_at timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX stripe_intents_one_per_request ON stripe_intents (tenant_id, subject, request) WHERE status = 'started';
CREATE UNIQUE INDEX stripe_intents_one_exclusive ON stripe_intents (tenant_id, subject) WHERE status = 'started' AND exclusive;
CREATE INDEX stripe_intents_recent ON stripe_intents (tenant_id, subject, created_at);
ALTER TABLE stripe_intents ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe_intents FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON stripe_intents
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON stripe_intents TO billing_rw;
