-- Tenant lifecycle for operators: finding tenants across the platform, and purging deleted ones after retention.

GRANT SELECT (name, email, created_at) ON tenants TO billing_resolver;
SET LOCAL ROLE billing_resolver;

-- Operators find tenants by name, email (case-insensitive substring), id or Stripe customer id; deleted ones too.
CREATE FUNCTION search_tenants(p_query text, p_after uuid, p_limit integer)
RETURNS TABLE (id uuid, name text, email text, stripe_customer_id text, created_at timestamptz, deleted_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT t.id, t.name, t.email, t.stripe_customer_id, t.created_at, t.deleted_at FROM tenants t
    WHERE (p_query IS NULL
           OR t.name ILIKE '%' || p_query || '%' OR t.email ILIKE '%' || p_query || '%'
           OR t.stripe_customer_id = p_query OR t.id::text = lower(p_query))
      AND (p_after IS NULL OR t.id > p_after)
    ORDER BY t.id
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION search_tenants(text, uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION search_tenants(text, uuid, integer) TO billing_rw;

-- Tenants deleted before p_before, for `billingd tenants purge` (ids only).
CREATE FUNCTION tenants_deleted_before(p_before timestamptz) RETURNS TABLE (id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT t.id FROM tenants t WHERE t.deleted_at IS NOT NULL AND t.deleted_at < p_before ORDER BY t.deleted_at
$$;
REVOKE ALL ON FUNCTION tenants_deleted_before(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenants_deleted_before(timestamptz) TO billing_owner;

SET LOCAL ROLE billing_owner;
