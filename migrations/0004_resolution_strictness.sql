-- A Stripe subscription id names one tenant. Should two tenants' rows ever carry the same id, the lookup
-- answers nothing rather than an arbitrary one of them (an unresolved event is retried; a wrong tenant is not).
-- The function belongs to billing_resolver; only its owner may replace it.
SET LOCAL ROLE billing_resolver;

CREATE OR REPLACE FUNCTION tenant_for_stripe_subscription(p_subscription text) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT CASE WHEN count(DISTINCT tenant_id) = 1 THEN min(tenant_id::text)::uuid END
    FROM subscriptions WHERE stripe_subscription_id = p_subscription
$$;

SET LOCAL ROLE billing_owner;
