-- The inbox of Stripe events: every verified event is stored here, by its id, before Stripe gets its 2xx.
-- A platform table (tenant_id is filled once an event is resolved to a tenant, and may stay empty).
-- The server reaches it only through the functions below.

CREATE TABLE stripe_events (
    event_id text PRIMARY KEY,
    type text NOT NULL,
    created timestamptz NOT NULL,
    livemode boolean NOT NULL,
    payload jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'processing', 'processed', 'ignored', 'unresolved', 'stale', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    tenant_id uuid,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    received_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);
CREATE INDEX stripe_events_due ON stripe_events (next_attempt_at) WHERE status IN ('pending', 'unresolved');
CREATE INDEX stripe_events_created ON stripe_events (created);

-- Stores a verified event once; a repeat delivery changes nothing. True when this call stored it.
-- An event whose livemode does not match the server's key is kept, visibly, as ignored.
CREATE FUNCTION store_stripe_event(
    p_event_id text, p_type text, p_created timestamptz, p_livemode boolean, p_payload jsonb, p_ignored_because text
) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
DECLARE
    stored boolean;
BEGIN
    INSERT INTO stripe_events (event_id, type, created, livemode, payload, status, last_error)
    VALUES (p_event_id, p_type, p_created, p_livemode, p_payload,
            CASE WHEN p_ignored_because IS NULL THEN 'pending' ELSE 'ignored' END, p_ignored_because)
    ON CONFLICT (event_id) DO NOTHING;
    stored := FOUND;
    IF stored AND p_ignored_because IS NULL THEN
        -- Wakes the inbox worker (LISTEN billing_stripe_events); polling is the fallback.
        PERFORM pg_notify('billing_stripe_events', p_event_id);
    END IF;
    RETURN stored;
END
$$;
REVOKE ALL ON FUNCTION store_stripe_event(text, text, timestamptz, boolean, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION store_stripe_event(text, text, timestamptz, boolean, jsonb, text) TO billing_rw;
