-- The credit wallet's own movements: consumption by the SaaS backend and grants by operators, each named by the
-- caller's idempotency key so that a repeat returns the first result instead of moving credits again.

-- One keyed entry, atomically: the tenant's balance row is locked first (so entries of one tenant serialize and
-- their ids follow commit order), a repeat of the source returns the entry it made, and with p_require_balance an
-- entry that would take the available balance below zero is refused, changing nothing.
-- outcome: 'applied', 'replayed' (the entry is the earlier one) or 'insufficient' (no entry).
CREATE FUNCTION apply_credit_entry(
    p_tenant uuid, p_source text, p_kind text, p_amount bigint, p_reason text, p_require_balance boolean
) RETURNS TABLE (
    outcome text, entry_id bigint, kind text, amount bigint, balance_after bigint, reason text, created_at timestamptz,
    available bigint, frozen bigint
)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = billing, pg_temp
AS $$
DECLARE
    v_available bigint;
    v_frozen bigint;
    v_entry credit_ledger%ROWTYPE;
BEGIN
    INSERT INTO credit_balances (tenant_id) VALUES (p_tenant) ON CONFLICT (tenant_id) DO NOTHING;
    SELECT b.available, b.frozen INTO v_available, v_frozen FROM credit_balances b WHERE b.tenant_id = p_tenant FOR UPDATE;
    SELECT * INTO v_entry FROM credit_ledger l WHERE l.tenant_id = p_tenant AND l.source = p_source;
    IF FOUND THEN
        RETURN QUERY SELECT 'replayed'::text, v_entry.entry_id, v_entry.kind, v_entry.amount, v_entry.balance_after,
                            v_entry.reason, v_entry.created_at, v_available, v_frozen;
        RETURN;
    END IF;
    IF p_require_balance AND v_available + p_amount < 0 THEN
        RETURN QUERY SELECT 'insufficient'::text, NULL::bigint, p_kind, p_amount, NULL::bigint, p_reason,
                            NULL::timestamptz, v_available, v_frozen;
        RETURN;
    END IF;
    v_available := v_available + p_amount;
    INSERT INTO credit_ledger (tenant_id, source, kind, amount, balance_after, reason)
    VALUES (p_tenant, p_source, p_kind, p_amount, v_available, p_reason)
    RETURNING * INTO v_entry;
    UPDATE credit_balances SET available = v_available, updated_at = now() WHERE tenant_id = p_tenant;
    RETURN QUERY SELECT 'applied'::text, v_entry.entry_id, v_entry.kind, v_entry.amount, v_entry.balance_after,
                        v_entry.reason, v_entry.created_at, v_available, v_frozen;
END
$$;
REVOKE ALL ON FUNCTION apply_credit_entry(uuid, text, text, bigint, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION apply_credit_entry(uuid, text, text, bigint, text, boolean) TO billing_rw;

-- A refund an operator asked for through billing.refund: the same payment, amount and reason is the same refund.
ALTER TABLE refunds ADD COLUMN request_key text;
CREATE UNIQUE INDEX refunds_request ON refunds (tenant_id, payment_id, request_key) WHERE request_key IS NOT NULL;

-- A downgrade takes effect at the end of the period in which it was asked for: that time is kept with it (the live
-- current_period_end moves on at renewal), and the job applies it shortly before, so the renewal bills the new price.
ALTER TABLE subscriptions ADD COLUMN pending_effective_at timestamptz;
-- When the end of a past-due grace period was announced (entitlement.changed), so it is announced once.
ALTER TABLE subscriptions ADD COLUMN grace_notified_at timestamptz;

-- The jobs find their work across tenants (ids only), then work in each tenant's scope.
GRANT SELECT (pending_plan, pending_effective_at, past_due_since, grace_notified_at) ON subscriptions TO billing_resolver;
SET LOCAL ROLE billing_resolver;

CREATE FUNCTION pending_plan_changes_due(p_by timestamptz, p_limit integer)
RETURNS TABLE (tenant_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT s.tenant_id FROM subscriptions s
    WHERE s.is_current AND s.pending_plan IS NOT NULL AND s.pending_effective_at <= p_by
      AND s.status NOT IN ('canceled', 'incomplete_expired')
    ORDER BY s.pending_effective_at
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION pending_plan_changes_due(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pending_plan_changes_due(timestamptz, integer) TO billing_rw;

-- Past-due subscriptions whose grace ended before p_since and was not announced yet.
CREATE FUNCTION grace_periods_ended(p_since timestamptz, p_limit integer)
RETURNS TABLE (tenant_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT s.tenant_id FROM subscriptions s
    WHERE s.is_current AND s.status = 'past_due' AND s.past_due_since <= p_since AND s.grace_notified_at IS NULL
    ORDER BY s.past_due_since
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION grace_periods_ended(timestamptz, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION grace_periods_ended(timestamptz, integer) TO billing_rw;

SET LOCAL ROLE billing_owner;
