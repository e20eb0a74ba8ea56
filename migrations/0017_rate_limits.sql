-- Token buckets per tenant and method class, shared by every server process: each call that reaches Stripe takes
-- a token, and a bucket refills at its rate up to its burst. A call that finds it empty is told how long to wait.
CREATE TABLE rate_buckets (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    class text NOT NULL,
    tokens double precision NOT NULL,
    refilled_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, class)
);
ALTER TABLE rate_buckets ENABLE ROW LEVEL SECURITY;
ALTER TABLE rate_buckets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON rate_buckets
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON rate_buckets TO billing_rw;

-- Takes one token from the tenant's bucket of `p_class` (in the transaction's tenant scope): 0 when taken, else the
-- seconds until one is there.
CREATE FUNCTION take_rate_token(p_class text, p_per_minute integer, p_burst integer, p_now timestamptz)
RETURNS double precision
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = billing, pg_temp
AS $$
DECLARE
    v_tenant uuid := NULLIF(current_setting('app.tenant_id', true), '')::uuid;
    v_rate double precision := p_per_minute / 60.0;
    v_tokens double precision;
BEGIN
    INSERT INTO rate_buckets (tenant_id, class, tokens, refilled_at) VALUES (v_tenant, p_class, p_burst, p_now)
        ON CONFLICT (tenant_id, class) DO NOTHING;
    SELECT least(p_burst, tokens + greatest(0, extract(epoch FROM p_now - refilled_at)) * v_rate) INTO v_tokens
        FROM rate_buckets WHERE tenant_id = v_tenant AND class = p_class FOR UPDATE;
    IF v_tokens >= 1 THEN
        UPDATE rate_buckets SET tokens = v_tokens - 1, refilled_at = greatest(refilled_at, p_now)
            WHERE tenant_id = v_tenant AND class = p_class;
        RETURN 0;
    END IF;
    UPDATE rate_buckets SET tokens = v_tokens, refilled_at = greatest(refilled_at, p_now)
        WHERE tenant_id = v_tenant AND class = p_class;
    RETURN (1 - v_tokens) / v_rate;
END;
$$;
GRANT EXECUTE ON FUNCTION take_rate_token(text, integer, integer, timestamptz) TO billing_rw;
