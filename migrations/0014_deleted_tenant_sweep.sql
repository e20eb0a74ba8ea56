-- Nothing may bill a deleted tenant. tenants.delete cancels what it sees; a subscription whose first event was
-- being processed while the deletion ran (it saw the tenant live, and the deletion did not see the subscription)
-- slips past both. Every reconciliation pass re-reads such subscriptions from Stripe through the inbox, and the
-- handler cancels them.
SET LOCAL ROLE billing_resolver;

CREATE FUNCTION live_subscriptions_of_deleted_tenants(p_limit integer)
RETURNS TABLE (tenant_id uuid, stripe_subscription_id text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT s.tenant_id, s.stripe_subscription_id FROM subscriptions s JOIN tenants t ON t.id = s.tenant_id
    WHERE t.deleted_at IS NOT NULL AND s.billing_mode = 'stripe' AND s.status NOT IN ('canceled', 'incomplete_expired')
    ORDER BY s.tenant_id, s.stripe_subscription_id
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION live_subscriptions_of_deleted_tenants(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION live_subscriptions_of_deleted_tenants(integer) TO billing_rw;

SET LOCAL ROLE billing_owner;
