-- Since Clover, Stripe schedules a cancellation with `cancel_at` (not only `cancel_at_period_end`), and the Customer
-- Portal's downgrade at the period's end is a subscription schedule. Both are kept with the subscription, so status
-- can say when it ends and why, resume can undo either, and the plan-change job leaves a schedule's subscription to
-- the schedule. `pending_update_expires_at`: an upgrade whose invoice is unpaid (payment_behavior
-- pending_if_incomplete) waits until then, and the subscription stays on its plan.
ALTER TABLE subscriptions
    ADD COLUMN cancel_at timestamptz,
    ADD COLUMN stripe_schedule_id text,
    ADD COLUMN pending_update_expires_at timestamptz,
    ADD COLUMN pending_source text CHECK (pending_source IN ('request', 'schedule'));

-- billing.status gains them: the function's row type changes, so it is made anew.
DROP FUNCTION tenant_status(text);
CREATE FUNCTION tenant_status(p_tenant text)
RETURNS TABLE (
    plan text, billing_interval text, status text, seats integer,
    current_period_end timestamptz, cancel_at_period_end boolean, past_due_since timestamptz,
    pending_plan text, pending_interval text, credits_available bigint, credits_frozen bigint,
    cancel_at timestamptz, pending_effective_at timestamptz, pending_source text, stripe_schedule_id text,
    pending_update_expires_at timestamptz
)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = billing, pg_temp
AS $$
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant, true);
    RETURN QUERY
        SELECT s.plan, s.billing_interval, s.status, s.seats,
               s.current_period_end, s.cancel_at_period_end, s.past_due_since,
               s.pending_plan, s.pending_interval, coalesce(b.available, 0), coalesce(b.frozen, 0),
               s.cancel_at, s.pending_effective_at, s.pending_source, s.stripe_schedule_id, s.pending_update_expires_at
        FROM tenants t
        LEFT JOIN subscriptions s ON s.tenant_id = t.id AND s.is_current
        LEFT JOIN credit_balances b ON b.tenant_id = t.id
        WHERE t.id = p_tenant::uuid AND t.deleted_at IS NULL;
END
$$;
REVOKE ALL ON FUNCTION tenant_status(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_status(text) TO billing_rw;

-- The plan-change job applies only changes asked for here: a subscription schedule's phases apply themselves.
GRANT SELECT (pending_source) ON subscriptions TO billing_resolver;
SET LOCAL ROLE billing_resolver;
CREATE OR REPLACE FUNCTION pending_plan_changes_due(p_by timestamptz, p_limit integer)
RETURNS TABLE (tenant_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT s.tenant_id FROM subscriptions s
    WHERE s.is_current AND s.pending_plan IS NOT NULL AND s.pending_effective_at <= p_by
      AND s.pending_source IS DISTINCT FROM 'schedule'
      AND s.status NOT IN ('canceled', 'incomplete_expired')
    ORDER BY s.pending_effective_at
    LIMIT p_limit
$$;
SET LOCAL ROLE billing_owner;
