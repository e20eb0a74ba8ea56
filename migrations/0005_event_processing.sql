-- What processing Stripe's events records: payments (every successful charge), refunds, disputes, Stripe's invoices,
-- top-up outcomes and the frozen side of the credit ledger; and the inbox functions the worker, the reconciliation
-- job and `billingd events` use. Money and credits change only here, from verified Stripe events.

-- The ledger explains both balances: `amount` moves available credits, `frozen_delta` moves frozen ones.
ALTER TABLE credit_ledger ADD COLUMN frozen_delta bigint NOT NULL DEFAULT 0;
ALTER TABLE credit_ledger ADD COLUMN stripe_event_id text;
CREATE INDEX credit_ledger_newest ON credit_ledger (tenant_id, entry_id DESC);

-- A top-up is paid (credited), expired or failed (closed unpaid), or flagged (Stripe took an amount that does not
-- match it: not credited, for an operator to settle).
ALTER TABLE top_ups DROP CONSTRAINT top_ups_status_check;
ALTER TABLE top_ups ADD CONSTRAINT top_ups_status_check
    CHECK (status IN ('pending', 'paid', 'expired', 'failed', 'flagged'));
ALTER TABLE top_ups
    ADD COLUMN payment_intent_id text,
    ADD COLUMN paid_at timestamptz,
    ADD COLUMN last_failure text,
    ADD COLUMN flag text;
CREATE INDEX top_ups_by_session ON top_ups (tenant_id, session_id);
-- A flagged top-up keeps its idempotency key: a client's retry must not open a second payment for it.
DROP INDEX top_ups_live_key;
CREATE UNIQUE INDEX top_ups_live_key ON top_ups (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND status IN ('pending', 'paid', 'flagged');

-- When Stripe created each subscription: the tenant's current subscription is its newest live one.
ALTER TABLE subscriptions ADD COLUMN stripe_created_at timestamptz;

-- Every successful charge, top-ups included. Credits bought by a top-up stay attached to its payment, so refunds
-- and disputes know what to take back or freeze.
CREATE TABLE payments (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    -- The PaymentIntent's id, or the charge's for a charge made without one.
    payment_id text NOT NULL,
    payment_intent_id text,
    charge_id text,
    amount bigint NOT NULL CHECK (amount >= 0),
    amount_refunded bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    currency text NOT NULL,
    purpose text NOT NULL CHECK (purpose IN ('credit_topup', 'subscription', 'invoice', 'other')),
    top_up_id uuid,
    stripe_invoice_id text,
    -- Credits this payment bought (set when its top-up is credited), and how many of them refunds or a lost dispute
    -- took back, and how many an open dispute holds frozen.
    credits bigint NOT NULL DEFAULT 0 CHECK (credits >= 0),
    credits_taken_back bigint NOT NULL DEFAULT 0 CHECK (credits_taken_back >= 0),
    credits_frozen bigint NOT NULL DEFAULT 0 CHECK (credits_frozen >= 0),
    dispute_status text NOT NULL DEFAULT 'none' CHECK (dispute_status IN ('none', 'open', 'won', 'lost')),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, payment_id),
    UNIQUE (tenant_id, charge_id),
    CHECK (amount_refunded <= amount)
);
CREATE INDEX payments_newest ON payments (tenant_id, created_at DESC);
-- For tenant resolution by PaymentIntent or charge (refunds and disputes name only those).
CREATE INDEX payments_by_intent ON payments (payment_intent_id);
CREATE INDEX payments_by_charge ON payments (charge_id);
ALTER TABLE payments ENABLE ROW LEVEL SECURITY;
ALTER TABLE payments FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON payments
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
CREATE POLICY resolver_reads ON payments FOR SELECT TO billing_resolver USING (true);
GRANT SELECT, INSERT, UPDATE ON payments TO billing_rw;
GRANT SELECT (tenant_id, payment_intent_id, charge_id) ON payments TO billing_resolver;

CREATE TABLE refunds (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    refund_id text NOT NULL,
    payment_id text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    currency text NOT NULL,
    status text NOT NULL,
    reason text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, refund_id),
    FOREIGN KEY (tenant_id, payment_id) REFERENCES payments (tenant_id, payment_id)
);
ALTER TABLE refunds ENABLE ROW LEVEL SECURITY;
ALTER TABLE refunds FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON refunds
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON refunds TO billing_rw;

CREATE TABLE disputes (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    dispute_id text NOT NULL,
    payment_id text NOT NULL,
    amount bigint NOT NULL,
    currency text NOT NULL,
    reason text,
    status text NOT NULL,
    opened_at timestamptz NOT NULL,
    closed_at timestamptz,
    last_event_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, dispute_id),
    FOREIGN KEY (tenant_id, payment_id) REFERENCES payments (tenant_id, payment_id)
);
ALTER TABLE disputes ENABLE ROW LEVEL SECURITY;
ALTER TABLE disputes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON disputes
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON disputes TO billing_rw;

-- Invoices Stripe Billing issued for a tenant's subscription (our own engine's invoices are another table).
CREATE TABLE stripe_invoices (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    invoice_id text NOT NULL,
    stripe_subscription_id text,
    number text,
    status text,
    amount_due bigint NOT NULL DEFAULT 0,
    amount_paid bigint NOT NULL DEFAULT 0,
    amount_remaining bigint NOT NULL DEFAULT 0,
    currency text,
    hosted_invoice_url text,
    attempt_count integer NOT NULL DEFAULT 0,
    next_payment_attempt timestamptz,
    -- The last payment problem Stripe reported (payment_failed, payment_action_required), cleared when paid.
    payment_problem text,
    period_start timestamptz,
    period_end timestamptz,
    last_event_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, invoice_id)
);
CREATE INDEX stripe_invoices_newest ON stripe_invoices (tenant_id, created_at DESC);
ALTER TABLE stripe_invoices ENABLE ROW LEVEL SECURITY;
ALTER TABLE stripe_invoices FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON stripe_invoices
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON stripe_invoices TO billing_rw;

-- One ledger entry and the cached balances, atomically: the tenant's balance row is locked first, so concurrent
-- entries serialize and the source check cannot race. NULL when an entry with this source exists (applied once).
CREATE FUNCTION append_credit_entry(
    p_tenant uuid, p_source text, p_kind text, p_amount bigint, p_frozen_delta bigint, p_reason text, p_event text
) RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = billing, pg_temp
AS $$
DECLARE
    v_available bigint;
    v_frozen bigint;
BEGIN
    INSERT INTO credit_balances (tenant_id) VALUES (p_tenant) ON CONFLICT (tenant_id) DO NOTHING;
    SELECT available, frozen INTO v_available, v_frozen FROM credit_balances WHERE tenant_id = p_tenant FOR UPDATE;
    IF EXISTS (SELECT 1 FROM credit_ledger WHERE tenant_id = p_tenant AND source = p_source) THEN
        RETURN NULL;
    END IF;
    v_available := v_available + p_amount;
    v_frozen := v_frozen + p_frozen_delta;
    INSERT INTO credit_ledger (tenant_id, source, kind, amount, frozen_delta, balance_after, reason, stripe_event_id)
    VALUES (p_tenant, p_source, p_kind, p_amount, p_frozen_delta, v_available, p_reason, p_event);
    UPDATE credit_balances SET available = v_available, frozen = v_frozen, updated_at = now() WHERE tenant_id = p_tenant;
    RETURN v_available;
END
$$;
REVOKE ALL ON FUNCTION append_credit_entry(uuid, text, text, bigint, bigint, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION append_credit_entry(uuid, text, text, bigint, bigint, text, text) TO billing_rw;

-- Tries that failed (attempts count every try, unresolved ones included): backoff and parking count failures only.
ALTER TABLE stripe_events ADD COLUMN failures integer NOT NULL DEFAULT 0;

-- When unresolved events were last woken (a later event linked a customer, subscription or payment). An event that
-- ends unresolved after a wake that happened while it was being processed is due again at once.
CREATE TABLE stripe_inbox_wakes (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    woken_at timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO stripe_inbox_wakes DEFAULT VALUES;

-- The inbox worker's claim: the oldest due event no other worker holds, locked until this transaction ends. The
-- event's effects and its new status commit together, so a crash anywhere leaves it due again, never half-applied.
-- `p_due_by` (NULL: now) lets one pass stop at what was due when it started.
CREATE FUNCTION claim_stripe_event(p_due_by timestamptz)
RETURNS TABLE (event_id text, type text, created timestamptz, livemode boolean, attempts integer, failures integer,
               status text, payload text)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT e.event_id, e.type, e.created, e.livemode, e.attempts, e.failures, e.status, e.payload::text
    FROM stripe_events e
    WHERE e.status IN ('pending', 'unresolved') AND e.next_attempt_at <= coalesce(p_due_by, clock_timestamp())
    ORDER BY e.created, e.event_id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
$$;
REVOKE ALL ON FUNCTION claim_stripe_event(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_stripe_event(timestamptz) TO billing_rw;

-- Records how processing a claimed event ended. `p_status`: processed, ignored, stale, unresolved (due again after
-- p_retry_ms, or at once if unresolved events were woken while this one was being processed), pending (failed, due
-- again after p_retry_ms) or failed (parked for an operator). Attempts count every try; failures only failed ones.
CREATE FUNCTION finish_stripe_event(p_event_id text, p_status text, p_tenant uuid, p_note text, p_retry_ms bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
DECLARE
    due timestamptz := clock_timestamp() + make_interval(secs => coalesce(p_retry_ms, 0) / 1000.0);
BEGIN
    IF p_status NOT IN ('processed', 'ignored', 'stale', 'unresolved', 'pending', 'failed') THEN
        RAISE EXCEPTION 'finish_stripe_event: unknown status %', p_status;
    END IF;
    IF p_status = 'unresolved' AND (SELECT woken_at FROM stripe_inbox_wakes) >= now() THEN
        due := clock_timestamp();
    END IF;
    UPDATE stripe_events SET
        status = p_status,
        tenant_id = coalesce(p_tenant, tenant_id),
        attempts = attempts + 1,
        failures = failures + CASE WHEN p_status IN ('pending', 'failed') THEN 1 ELSE 0 END,
        last_error = p_note,
        next_attempt_at = due,
        processed_at = CASE WHEN p_status IN ('processed', 'ignored', 'stale') THEN clock_timestamp() END
    WHERE event_id = p_event_id;
END
$$;
REVOKE ALL ON FUNCTION finish_stripe_event(text, text, uuid, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION finish_stripe_event(text, text, uuid, text, bigint) TO billing_rw;

-- A later event linked a customer, subscription or payment to a tenant: unresolved events are due now. Called after
-- that event committed, outside any claim; rows other workers hold are skipped (they see the wake time when they
-- finish), so no worker ever waits on another here.
CREATE FUNCTION wake_unresolved_stripe_events() RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
DECLARE
    woken integer;
BEGIN
    UPDATE stripe_inbox_wakes SET woken_at = clock_timestamp();
    UPDATE stripe_events SET next_attempt_at = clock_timestamp()
    WHERE event_id IN (
        SELECT e.event_id FROM stripe_events e
        WHERE e.status = 'unresolved' AND e.next_attempt_at > clock_timestamp()
        FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS woken = ROW_COUNT;
    IF woken > 0 THEN
        PERFORM pg_notify('billing_stripe_events', 'unresolved');
    END IF;
    RETURN woken;
END
$$;
REVOKE ALL ON FUNCTION wake_unresolved_stripe_events() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wake_unresolved_stripe_events() TO billing_rw;

-- For operators (`billingd events`): newest first, optionally of one status.
CREATE FUNCTION list_stripe_events(p_status text, p_limit integer)
RETURNS TABLE (event_id text, type text, created timestamptz, status text, attempts integer, last_error text,
               tenant_id uuid, received_at timestamptz, processed_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT e.event_id, e.type, e.created, e.status, e.attempts, e.last_error, e.tenant_id, e.received_at, e.processed_at
    FROM stripe_events e
    WHERE p_status IS NULL OR e.status = p_status
    ORDER BY e.created DESC, e.event_id DESC
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION list_stripe_events(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION list_stripe_events(text, integer) TO billing_rw;

CREATE FUNCTION show_stripe_event(p_event_id text)
RETURNS TABLE (event_id text, type text, created timestamptz, status text, attempts integer, failures integer, last_error text,
               tenant_id uuid, received_at timestamptz, processed_at timestamptz, next_attempt_at timestamptz, payload text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT e.event_id, e.type, e.created, e.status, e.attempts, e.failures, e.last_error, e.tenant_id, e.received_at,
           e.processed_at, e.next_attempt_at, e.payload::text
    FROM stripe_events e WHERE e.event_id = p_event_id
$$;
REVOKE ALL ON FUNCTION show_stripe_event(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION show_stripe_event(text) TO billing_rw;

-- An operator's replay: due now, attempts and failures counted afresh. Returns the status it had (NULL: no such
-- event). Replaying is safe: every handler applies its effect once (ledger sources, event times). An event kept as
-- ignored because its livemode is not this server's stays ignored: the worker ignores it again.
CREATE FUNCTION retry_stripe_event(p_event_id text) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
DECLARE
    previous text;
BEGIN
    SELECT status INTO previous FROM stripe_events WHERE event_id = p_event_id FOR UPDATE;
    IF previous IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE stripe_events
    SET status = 'pending', attempts = 0, failures = 0, next_attempt_at = clock_timestamp(), processed_at = NULL
    WHERE event_id = p_event_id;
    PERFORM pg_notify('billing_stripe_events', p_event_id);
    RETURN previous;
END
$$;
REVOKE ALL ON FUNCTION retry_stripe_event(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retry_stripe_event(text) TO billing_rw;

-- Inbox depth by status, and the receipt time of the oldest event still waiting (pending or unresolved).
CREATE FUNCTION stripe_inbox_stats()
RETURNS TABLE (status text, events bigint, oldest_received_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT e.status, count(*), min(e.received_at) FROM stripe_events e GROUP BY e.status
$$;
REVOKE ALL ON FUNCTION stripe_inbox_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION stripe_inbox_stats() TO billing_rw;

-- Reconciliation starts from the newest event already in the inbox.
CREATE FUNCTION newest_stripe_event_created() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT max(created) FROM stripe_events WHERE event_id NOT LIKE 'reconcile\_%'
$$;
REVOKE ALL ON FUNCTION newest_stripe_event_created() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION newest_stripe_event_created() TO billing_rw;

-- Resolver lookups (ids only). They belong to billing_resolver, whose read policies see every tenant's rows.
GRANT SELECT (status, is_current, updated_at) ON subscriptions TO billing_resolver;
SET LOCAL ROLE billing_resolver;

-- A payment (PaymentIntent or charge id) to its tenant: refunds and disputes name only the charge.
CREATE FUNCTION tenant_for_stripe_payment(p_payment text) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT CASE WHEN count(DISTINCT tenant_id) = 1 THEN min(tenant_id::text)::uuid END
    FROM payments WHERE payment_intent_id = p_payment OR charge_id = p_payment
$$;
REVOKE ALL ON FUNCTION tenant_for_stripe_payment(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_for_stripe_payment(text) TO billing_rw;

-- A tenant id taken from metadata is used only when the tenant exists.
CREATE FUNCTION tenant_exists(p_tenant uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM tenants WHERE id = p_tenant)
$$;
REVOKE ALL ON FUNCTION tenant_exists(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_exists(uuid) TO billing_rw;

-- Reconciliation re-reads current subscriptions still live that no event has touched since `p_before`.
CREATE FUNCTION subscriptions_to_refresh(p_before timestamptz, p_limit integer)
RETURNS TABLE (tenant_id uuid, stripe_subscription_id text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT s.tenant_id, s.stripe_subscription_id FROM subscriptions s
    WHERE s.is_current AND s.status NOT IN ('canceled', 'incomplete_expired') AND s.updated_at < p_before
    ORDER BY s.updated_at
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION subscriptions_to_refresh(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION subscriptions_to_refresh(timestamptz, integer) TO billing_rw;

SET LOCAL ROLE billing_owner;
