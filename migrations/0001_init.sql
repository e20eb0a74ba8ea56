-- Tenants, subscriptions, the credit ledger and the audit trail, with row-level security on every tenant table.
-- Runs as billing_owner with search_path = billing (the migration runner sets both).
--
-- Rules every later migration follows:
-- * A tenant table has tenant_id NOT NULL leading its primary key, unique constraints and foreign keys,
--   ENABLE + FORCE ROW LEVEL SECURITY, and the tenant_isolation policy below.
-- * The server's role (billing_rw) gets only the privileges it uses; never DELETE or TRUNCATE on platform tables.
-- * Cross-tenant lookups are SECURITY DEFINER functions owned by billing_resolver that return ids only.

GRANT USAGE ON SCHEMA billing TO billing_rw, billing_resolver;
-- billing_resolver must be able to own the lookup functions below.
GRANT CREATE ON SCHEMA billing TO billing_resolver;

-- Platform table: one row per tenant. Fenced like a tenant table on its own id.
CREATE TABLE tenants (
    id uuid PRIMARY KEY,
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    stripe_customer_id text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY resolver_reads ON tenants FOR SELECT TO billing_resolver USING (true);
GRANT SELECT, INSERT ON tenants TO billing_rw;
GRANT UPDATE (name, email, stripe_customer_id, deleted_at) ON tenants TO billing_rw;
GRANT SELECT (id, stripe_customer_id, deleted_at) ON tenants TO billing_resolver;

-- A tenant's Stripe subscriptions; a new subscription after a canceled one is a new row, and one is current.
CREATE TABLE subscriptions (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    stripe_subscription_id text NOT NULL,
    stripe_customer_id text,
    stripe_price_id text,
    plan text NOT NULL,
    billing_interval text NOT NULL CHECK (billing_interval IN ('month', 'year')),
    seats integer NOT NULL CHECK (seats >= 1),
    status text NOT NULL CHECK (status IN
        ('active', 'trialing', 'past_due', 'unpaid', 'canceled', 'incomplete', 'incomplete_expired', 'paused')),
    past_due_since timestamptz,
    current_period_end timestamptz,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    pending_plan text,
    pending_interval text CHECK (pending_interval IN ('month', 'year')),
    is_current boolean NOT NULL DEFAULT true,
    -- Creation time of the newest Stripe event applied: an older event never overwrites newer state.
    last_event_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, stripe_subscription_id)
);
CREATE UNIQUE INDEX subscriptions_one_current ON subscriptions (tenant_id) WHERE is_current;
CREATE INDEX subscriptions_by_stripe_id ON subscriptions (stripe_subscription_id);
ALTER TABLE subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE subscriptions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON subscriptions
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY resolver_reads ON subscriptions FOR SELECT TO billing_resolver USING (true);
GRANT SELECT, INSERT, UPDATE ON subscriptions TO billing_rw;
GRANT SELECT (tenant_id, stripe_subscription_id) ON subscriptions TO billing_resolver;

-- Append-only: each entry is keyed by its source (top-up, consumption key, grant key, Stripe event) so it applies once.
CREATE TABLE credit_ledger (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    entry_id bigint GENERATED ALWAYS AS IDENTITY,
    source text NOT NULL,
    kind text NOT NULL,
    amount bigint NOT NULL,
    balance_after bigint NOT NULL,
    reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, entry_id),
    UNIQUE (tenant_id, source)
);
ALTER TABLE credit_ledger ENABLE ROW LEVEL SECURITY;
ALTER TABLE credit_ledger FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON credit_ledger
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT ON credit_ledger TO billing_rw;

-- The balance cached in the same transaction as each ledger entry. Frozen credits (open disputes) are not spendable.
CREATE TABLE credit_balances (
    tenant_id uuid NOT NULL PRIMARY KEY REFERENCES tenants (id),
    available bigint NOT NULL DEFAULT 0,
    frozen bigint NOT NULL DEFAULT 0 CHECK (frozen >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE credit_balances ENABLE ROW LEVEL SECURITY;
ALTER TABLE credit_balances FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON credit_balances
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON credit_balances TO billing_rw;

-- Who changed what, from which request or Stripe event, with the state before and after.
CREATE TABLE audit_events (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    event_id bigint GENERATED ALWAYS AS IDENTITY,
    actor_type text NOT NULL CHECK (actor_type IN ('user', 'service', 'operator', 'stripe', 'system')),
    actor text NOT NULL,
    action text NOT NULL,
    before jsonb,
    after jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);
ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON audit_events
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT ON audit_events TO billing_rw;

-- billing.status in one round trip: sets the tenant for this transaction and reads under RLS (SECURITY INVOKER).
-- No row means the tenant does not exist (or was deleted) for this caller.
CREATE FUNCTION tenant_status(p_tenant text)
RETURNS TABLE (
    plan text, billing_interval text, status text, seats integer,
    current_period_end timestamptz, cancel_at_period_end boolean, past_due_since timestamptz,
    pending_plan text, pending_interval text, credits_available bigint, credits_frozen bigint
)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = billing, pg_temp
AS $$
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant, true);
    RETURN QUERY
        SELECT s.plan, s.billing_interval, s.status, s.seats,
               s.current_period_end, s.cancel_at_period_end, s.past_due_since,
               s.pending_plan, s.pending_interval, coalesce(b.available, 0), coalesce(b.frozen, 0)
        FROM tenants t
        LEFT JOIN subscriptions s ON s.tenant_id = t.id AND s.is_current
        LEFT JOIN credit_balances b ON b.tenant_id = t.id
        WHERE t.id = p_tenant::uuid AND t.deleted_at IS NULL;
END
$$;
REVOKE ALL ON FUNCTION tenant_status(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_status(text) TO billing_rw;

-- Cross-tenant lookup for webhook tenant resolution: a Stripe customer id to its tenant's id, nothing more.
CREATE FUNCTION tenant_for_stripe_customer(p_customer text) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT id FROM tenants WHERE stripe_customer_id = p_customer
$$;
ALTER FUNCTION tenant_for_stripe_customer(text) OWNER TO billing_resolver;
REVOKE ALL ON FUNCTION tenant_for_stripe_customer(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_for_stripe_customer(text) TO billing_rw;

-- Cross-tenant lookup: a Stripe subscription id to its tenant's id.
CREATE FUNCTION tenant_for_stripe_subscription(p_subscription text) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT tenant_id FROM subscriptions WHERE stripe_subscription_id = p_subscription LIMIT 1
$$;
ALTER FUNCTION tenant_for_stripe_subscription(text) OWNER TO billing_resolver;
REVOKE ALL ON FUNCTION tenant_for_stripe_subscription(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_for_stripe_subscription(text) TO billing_rw;
