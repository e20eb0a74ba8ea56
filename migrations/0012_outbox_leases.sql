-- Delivering an outbox event no longer holds a transaction (and a pooled connection) across the HTTP call to the
-- product: a deliverer claims the event with a lease (its next_attempt_at moved past the HTTP timeout, and a claim
-- token), commits, sends, then finishes it with that token. A deliverer that dies mid-send leaves the event due again
-- once the lease runs out. And operators can now see the outbox and send parked events again (`billingd outbox`).

ALTER TABLE outbox_events ADD COLUMN claim uuid;
GRANT SELECT (last_error, delivered_at, claim) ON outbox_events TO billing_resolver;
GRANT UPDATE (claim) ON outbox_events TO billing_resolver;

SET LOCAL ROLE billing_resolver;

DROP FUNCTION claim_outbox_event();
DROP FUNCTION finish_outbox_event(uuid, uuid, boolean, text, bigint, boolean);

-- The oldest due event, leased for p_lease_ms: no other deliverer takes it until then. The attempt counts here, so
-- one that never finishes (its deliverer died, or outlived its lease) counts too; an event whose p_max_attempts
-- attempts are spent that way is parked instead of claimed.
CREATE FUNCTION claim_outbox_event(p_lease_ms bigint, p_max_attempts integer)
RETURNS TABLE (tenant_id uuid, event_id uuid, type text, payload text, attempts integer, claim uuid)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    WITH next AS (
        SELECT o.tenant_id, o.event_id, o.attempts >= p_max_attempts AS spent, o.claim IS NOT NULL AS abandoned
        FROM outbox_events o
        WHERE o.status = 'pending' AND o.next_attempt_at <= clock_timestamp()
        ORDER BY o.created_at, o.event_id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ), taken AS (
        UPDATE outbox_events o SET
            attempts = o.attempts + CASE WHEN next.spent THEN 0 ELSE 1 END,
            status = CASE WHEN next.spent THEN 'failed' ELSE 'pending' END,
            claim = CASE WHEN next.spent THEN NULL ELSE gen_random_uuid() END,
            last_error = CASE WHEN next.abandoned
                THEN 'an attempt did not finish: its deliverer stopped, or took longer than its lease' ELSE o.last_error END,
            next_attempt_at = clock_timestamp() + make_interval(secs => p_lease_ms / 1000.0)
        FROM next
        WHERE o.tenant_id = next.tenant_id AND o.event_id = next.event_id
        RETURNING o.tenant_id, o.event_id, o.type, o.payload, o.attempts, o.claim, o.status
    )
    SELECT t.tenant_id, t.event_id, t.type, t.payload, t.attempts, t.claim FROM taken t WHERE t.status = 'pending'
$$;
REVOKE ALL ON FUNCTION claim_outbox_event(bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION claim_outbox_event(bigint, integer) TO billing_rw;

-- Delivered, or not (due again after p_retry_ms, or parked as failed); the attempt was counted when it was claimed.
-- A failure counts only while the claim is still the deliverer's own (after its lease ran out another may hold the
-- event); a delivery always counts. True when it counted.
CREATE FUNCTION finish_outbox_event(
    p_tenant uuid, p_event uuid, p_claim uuid, p_delivered boolean, p_error text, p_retry_ms bigint, p_park boolean
) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    WITH finished AS (
        UPDATE outbox_events SET
            status = CASE WHEN p_delivered THEN 'delivered' WHEN p_park THEN 'failed' ELSE 'pending' END,
            delivered_at = CASE WHEN p_delivered THEN clock_timestamp() END,
            last_error = p_error,
            claim = NULL,
            next_attempt_at = clock_timestamp() + make_interval(secs => coalesce(p_retry_ms, 0) / 1000.0)
        WHERE tenant_id = p_tenant AND event_id = p_event AND status = 'pending' AND (p_delivered OR claim = p_claim)
        RETURNING 1
    )
    SELECT EXISTS (SELECT FROM finished)
$$;
REVOKE ALL ON FUNCTION finish_outbox_event(uuid, uuid, uuid, boolean, text, bigint, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION finish_outbox_event(uuid, uuid, uuid, boolean, text, bigint, boolean) TO billing_rw;

-- For operators (`billingd outbox list`): newest first, optionally of one status.
CREATE FUNCTION list_outbox_events(p_status text, p_limit integer)
RETURNS TABLE (event_id uuid, tenant_id uuid, type text, status text, attempts integer, last_error text,
               created_at timestamptz, next_attempt_at timestamptz, delivered_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT o.event_id, o.tenant_id, o.type, o.status, o.attempts, o.last_error, o.created_at, o.next_attempt_at, o.delivered_at
    FROM outbox_events o
    WHERE p_status IS NULL OR o.status = p_status
    ORDER BY o.created_at DESC, o.event_id DESC
    LIMIT p_limit
$$;
REVOKE ALL ON FUNCTION list_outbox_events(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION list_outbox_events(text, integer) TO billing_rw;

-- An operator's resend: one event (any status: a delivered one is sent again, the product deduplicates by id), or
-- with p_event NULL every parked one; due now, attempts counted afresh. Returns each event resent with the status
-- it had.
CREATE FUNCTION retry_outbox_events(p_event uuid)
RETURNS TABLE (event_id uuid, previous_status text)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    WITH chosen AS (
        SELECT o.tenant_id, o.event_id, o.status FROM outbox_events o
        WHERE (p_event IS NULL AND o.status = 'failed') OR o.event_id = p_event
        FOR UPDATE
    )
    UPDATE outbox_events o
    SET status = 'pending', attempts = 0, next_attempt_at = clock_timestamp(), claim = NULL
    FROM chosen
    WHERE o.tenant_id = chosen.tenant_id AND o.event_id = chosen.event_id
    RETURNING o.event_id, chosen.status
$$;
REVOKE ALL ON FUNCTION retry_outbox_events(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION retry_outbox_events(uuid) TO billing_rw;

-- Outbox depth by status, and the creation time of the oldest event still to be delivered.
CREATE FUNCTION outbox_stats()
RETURNS TABLE (status text, events bigint, oldest_created_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
    SELECT o.status, count(*), min(o.created_at) FROM outbox_events o GROUP BY o.status
$$;
REVOKE ALL ON FUNCTION outbox_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION outbox_stats() TO billing_rw;

SET LOCAL ROLE billing_owner;
