-- Checkout Sessions the server opened (subscriptions and credit top-ups), and the top-ups themselves.
-- Nothing here moves money or credits: a top-up is credited only when Stripe confirms it (the webhook issue).

CREATE TABLE checkout_sessions (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    session_id text NOT NULL,
    purpose text NOT NULL CHECK (purpose IN ('subscription', 'credit_topup', 'setup')),
    status text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'complete', 'expired')),
    url text NOT NULL,
    plan text,
    billing_interval text CHECK (billing_interval IN ('month', 'year')),
    seats integer,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, session_id)
);
CREATE INDEX checkout_sessions_recent ON checkout_sessions (tenant_id, created_at);
ALTER TABLE checkout_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE checkout_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON checkout_sessions
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON checkout_sessions TO billing_rw;

-- A pending purchase of credits. The client's idempotency key (when given) names it: the same key returns the
-- same session while it can still be paid; once that session expired, the key starts a new top-up.
CREATE TABLE top_ups (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    top_up_id uuid NOT NULL,
    idempotency_key text,
    credits integer NOT NULL CHECK (credits > 0),
    amount integer NOT NULL CHECK (amount > 0),
    currency text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid', 'expired', 'failed')),
    session_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, top_up_id),
    FOREIGN KEY (tenant_id, session_id) REFERENCES checkout_sessions (tenant_id, session_id)
);
CREATE UNIQUE INDEX top_ups_live_key ON top_ups (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status IN ('pending', 'paid');
ALTER TABLE top_ups ENABLE ROW LEVEL SECURITY;
ALTER TABLE top_ups FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON top_ups
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON top_ups TO billing_rw;
