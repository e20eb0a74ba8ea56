-- billing.status names the workspace (the billing page's heading shows it, and asks before a link's token for
-- another workspace replaces the one in use). The function's row type changes, so it is made anew.
DROP FUNCTION tenant_status(text);
CREATE FUNCTION tenant_status(p_tenant text)
RETURNS TABLE (
    plan text, billing_interval text, status text, seats integer,
    current_period_end timestamptz, cancel_at_period_end boolean, past_due_since timestamptz,
    pending_plan text, pending_interval text, credits_available bigint, credits_frozen bigint,
    cancel_at timestamptz, pending_effective_at timestamptz, pending_source text, stripe_schedule_id text,
    pending_update_expires_at timestamptz, tenant_name text
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
               s.cancel_at, s.pending_effective_at, s.pending_source, s.stripe_schedule_id, s.pending_update_expires_at,
               t.name
        FROM tenants t
        LEFT JOIN subscriptions s ON s.tenant_id = t.id AND s.is_current
        LEFT JOIN credit_balances b ON b.tenant_id = t.id
        WHERE t.id = p_tenant::uuid AND t.deleted_at IS NULL;
END
$$;
REVOKE ALL ON FUNCTION tenant_status(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenant_status(text) TO billing_rw;
