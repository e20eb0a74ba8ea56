-- The billing engine's own invoices, for plans billed by invoice rather than by a Stripe subscription: one invoice per
-- tenant and period (a rerun of the job is harmless), gapless numbers, lines in integer minor units, wallet credits
-- applied, one-off charges.

-- A subscription billed by this server (billing_mode 'invoice') has a local id (inv_sub_...) and periods of its own.
ALTER TABLE subscriptions ADD COLUMN billing_mode text NOT NULL DEFAULT 'stripe' CHECK (billing_mode IN ('stripe', 'invoice'));
ALTER TABLE subscriptions ADD COLUMN current_period_start timestamptz;

-- One-off charges an operator adds; the tenant's next invoice carries them.
CREATE TABLE invoice_charges (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    charge_id uuid NOT NULL,
    description text NOT NULL CHECK (length(description) BETWEEN 1 AND 200),
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL,
    idempotency_key text NOT NULL,
    invoice_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, charge_id),
    UNIQUE (tenant_id, idempotency_key)
);

CREATE TABLE invoices (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    invoice_id uuid NOT NULL,
    number text NOT NULL,
    stripe_subscription_id text NOT NULL,
    period_start timestamptz NOT NULL,
    period_end timestamptz NOT NULL,
    -- processing: charged, waiting for Stripe's confirmation (never charged again, voided or retried meanwhile).
    status text NOT NULL CHECK (status IN ('draft', 'open', 'processing', 'paid', 'action_required', 'overdue', 'written_off', 'void')),
    currency text NOT NULL,
    subtotal bigint NOT NULL CHECK (subtotal >= 0),
    credits_applied bigint NOT NULL DEFAULT 0 CHECK (credits_applied >= 0),
    credit_amount bigint NOT NULL DEFAULT 0 CHECK (credit_amount >= 0),
    amount_due bigint NOT NULL CHECK (amount_due >= 0),
    attempts integer NOT NULL DEFAULT 0,
    first_failed_at timestamptz,
    next_attempt_at timestamptz,
    payment_link text,
    paid_at timestamptz,
    overdue_at timestamptz,
    voided_at timestamptz,
    written_off_at timestamptz,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, invoice_id),
    -- Exactly one invoice per tenant, subscription and period.
    UNIQUE (tenant_id, stripe_subscription_id, period_start),
    CHECK (subtotal = credit_amount + amount_due)
);
CREATE INDEX invoices_newest ON invoices (tenant_id, created_at DESC);

CREATE TABLE invoice_lines (
    tenant_id uuid NOT NULL,
    invoice_id uuid NOT NULL,
    line_no integer NOT NULL,
    description text NOT NULL,
    quantity integer NOT NULL CHECK (quantity > 0),
    unit_amount bigint NOT NULL CHECK (unit_amount >= 0),
    amount bigint NOT NULL CHECK (amount >= 0),
    PRIMARY KEY (tenant_id, invoice_id, line_no),
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, invoice_id)
);

ALTER TABLE invoice_charges ENABLE ROW LEVEL SECURITY;
ALTER TABLE invoice_charges FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invoice_charges
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
ALTER TABLE invoices ENABLE ROW LEVEL SECURITY;
ALTER TABLE invoices FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invoices
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
ALTER TABLE invoice_lines ENABLE ROW LEVEL SECURITY;
ALTER TABLE invoice_lines FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invoice_lines
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON invoice_charges, invoices TO billing_rw;
GRANT SELECT, INSERT ON invoice_lines TO billing_rw;

-- Every attempt to collect an invoice: a real PaymentIntent each, keyed by invoice and attempt number, so a crash
-- between Stripe and our commit charges once (the retry gets Stripe's replay of the same attempt).
CREATE TABLE invoice_attempts (
    tenant_id uuid NOT NULL,
    invoice_id uuid NOT NULL,
    attempt integer NOT NULL CHECK (attempt > 0),
    payment_intent_id text,
    outcome text NOT NULL CHECK (outcome IN ('succeeded', 'declined', 'action_required', 'no_payment_method', 'error')),
    failure text,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, invoice_id, attempt),
    FOREIGN KEY (tenant_id, invoice_id) REFERENCES invoices (tenant_id, invoice_id)
);
ALTER TABLE invoice_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE invoice_attempts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON invoice_attempts
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT ON invoice_attempts TO billing_rw;

-- Invoice numbers: one platform-wide sequence without gaps (a number is taken in the invoice's own transaction, so
-- a rolled-back invoice gives its number back). A platform table, reached only through next_invoice_number().
CREATE TABLE invoice_numbers (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    last bigint NOT NULL DEFAULT 0
);
INSERT INTO invoice_numbers DEFAULT VALUES;

CREATE FUNCTION next_invoice_number() RETURNS text
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    UPDATE invoice_numbers SET last = last + 1
    RETURNING 'INV-' || CASE WHEN last < 1000000 THEN lpad(last::text, 6, '0') ELSE last::text END
$$;
REVOKE ALL ON FUNCTION next_invoice_number() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION next_invoice_number() TO billing_rw;

-- The invoicing job finds tenants billed by invoice, and invoices to collect (ids only), then works in each tenant's scope.
GRANT SELECT (billing_mode, current_period_start) ON subscriptions TO billing_resolver;
GRANT SELECT (tenant_id, status, next_attempt_at, overdue_at) ON invoices TO billing_resolver;
CREATE POLICY resolver_reads ON invoices FOR SELECT TO billing_resolver USING (true);
SET LOCAL ROLE billing_resolver;

CREATE FUNCTION invoice_billed_tenants(p_at timestamptz) RETURNS TABLE (tenant_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT s.tenant_id FROM subscriptions s
    WHERE s.is_current AND s.billing_mode = 'invoice' AND s.status NOT IN ('canceled', 'incomplete_expired')
      AND s.current_period_start <= p_at
    ORDER BY s.current_period_start
$$;
REVOKE ALL ON FUNCTION invoice_billed_tenants(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invoice_billed_tenants(timestamptz) TO billing_rw;

-- Tenants with an invoice to collect or to write off by p_at (ids only).

CREATE FUNCTION invoices_to_collect(p_at timestamptz, p_overdue_before timestamptz) RETURNS TABLE (tenant_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT DISTINCT i.tenant_id FROM invoices i
    WHERE (i.status IN ('open', 'action_required') AND i.next_attempt_at <= p_at)
       OR (i.status = 'overdue' AND i.overdue_at <= p_overdue_before)
$$;
REVOKE ALL ON FUNCTION invoices_to_collect(timestamptz, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION invoices_to_collect(timestamptz, timestamptz) TO billing_rw;

-- Reconciliation re-reads Stripe's subscriptions only: ours are not at Stripe.
CREATE OR REPLACE FUNCTION subscriptions_to_refresh(p_before timestamptz, p_limit integer)
RETURNS TABLE (tenant_id uuid, stripe_subscription_id text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT s.tenant_id, s.stripe_subscription_id FROM subscriptions s
    WHERE s.is_current AND s.billing_mode = 'stripe' AND s.status NOT IN ('canceled', 'incomplete_expired') AND s.updated_at < p_before
    ORDER BY s.updated_at
    LIMIT p_limit
$$;

SET LOCAL ROLE billing_owner;
