-- The outbox of events to the SaaS product (BILLING_EVENTS_URL): written in the same transaction as the change it
-- reports, delivered afterwards, signed, retried with backoff, each with a unique id.

CREATE TABLE outbox_events (
    tenant_id uuid NOT NULL REFERENCES tenants (id),
    event_id uuid NOT NULL,
    type text NOT NULL,
    -- The body exactly as it is sent and signed.
    payload text NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX outbox_events_due ON outbox_events (next_attempt_at) WHERE status = 'pending';
ALTER TABLE outbox_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE outbox_events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON outbox_events
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
-- Delivery is a platform job: the resolver role reads and updates delivery columns across tenants, only through
-- the functions below.
CREATE POLICY delivery ON outbox_events FOR ALL TO billing_resolver USING (true) WITH CHECK (true);
GRANT SELECT, INSERT ON outbox_events TO billing_rw;
GRANT SELECT (tenant_id, event_id, type, payload, status, attempts, next_attempt_at, created_at) ON outbox_events TO billing_resolver;
GRANT UPDATE (status, attempts, last_error, next_attempt_at, delivered_at) ON outbox_events TO billing_resolver;

SET LOCAL ROLE billing_resolver;

-- The oldest due event no other deliverer holds, locked until this transaction ends.
CREATE FUNCTION claim_outbox_event()
RETURNS TABLE (tenant_id uuid, event_id uuid, type text, payload text, attempts integer)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT o.tenant_id, o.event_id, o.type, o.payload, o.attempts FROM outbox_events o
    WHERE o.status = 'pending' AND o.next_attempt_at <= clock_timestamp()
    ORDER BY o.created_at, o.event_id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
$$;
REVOKE ALL ON FUNCTION claim_outbox_event() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_outbox_event() TO billing_rw;

-- Delivered, or not (due again after p_retry_ms, or parked as failed).
CREATE FUNCTION finish_outbox_event(p_tenant uuid, p_event uuid, p_delivered boolean, p_error text, p_retry_ms bigint, p_park boolean)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    UPDATE outbox_events SET
        attempts = attempts + 1,
        status = CASE WHEN p_delivered THEN 'delivered' WHEN p_park THEN 'failed' ELSE 'pending' END,
        delivered_at = CASE WHEN p_delivered THEN clock_timestamp() END,
        last_error = p_error,
        next_attempt_at = clock_timestamp() + make_interval(secs => coalesce(p_retry_ms, 0) / 1000.0)
    WHERE tenant_id = p_tenant AND event_id = p_event
$$;
REVOKE ALL ON FUNCTION finish_outbox_event(uuid, uuid, boolean, text, bigint, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION finish_outbox_event(uuid, uuid, boolean, text, bigint, boolean) TO billing_rw;

SET LOCAL ROLE billing_owner;
