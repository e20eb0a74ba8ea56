-- Events about other products on the same Stripe account never resolve here: retried forever, they were claimed
-- oldest first ahead of real events. An event still unresolved `p_park_after_ms` after it was received is now
-- `parked`: kept, listed and replayable like any other, skipped by claims (which take only pending and unresolved
-- events), and still woken, back to unresolved and due at once, when what it waits for is linked.
ALTER TABLE stripe_events DROP CONSTRAINT stripe_events_status_check;
ALTER TABLE stripe_events ADD CONSTRAINT stripe_events_status_check
    CHECK (status IN ('pending', 'processing', 'processed', 'ignored', 'unresolved', 'parked', 'stale', 'failed'));
CREATE INDEX stripe_events_parked_waiting ON stripe_events USING gin (waiting_for) WHERE status = 'parked';
CREATE INDEX stripe_events_parked_unnamed ON stripe_events (event_id) WHERE status = 'parked' AND waiting_for IS NULL;

DROP FUNCTION finish_stripe_event(text, text, uuid, text, bigint, text[]);
DROP FUNCTION wake_unresolved_stripe_events(text[]);

-- Records how processing a claimed event ended, and returns the status it was given. `p_status`: processed,
-- ignored, stale, unresolved (due again after p_retry_ms, or at once if unresolved events were woken while this one
-- was being processed; `p_waiting_for` names what it waits for; parked instead once it was received
-- `p_park_after_ms` ago, when that is given), pending (failed, due again after p_retry_ms) or failed (parked for an
-- operator). Attempts count every try; failures only failed ones.
CREATE FUNCTION finish_stripe_event(
    p_event_id text, p_status text, p_tenant uuid, p_note text, p_retry_ms bigint, p_waiting_for text[],
    p_park_after_ms bigint
) RETURNS text
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
DECLARE
    due timestamptz := clock_timestamp() + make_interval(secs => coalesce(p_retry_ms, 0) / 1000.0);
    final_status text := p_status;
BEGIN
    IF p_status NOT IN ('processed', 'ignored', 'stale', 'unresolved', 'pending', 'failed') THEN
        RAISE EXCEPTION 'finish_stripe_event: unknown status %', p_status;
    END IF;
    IF p_status = 'unresolved' AND (SELECT woken_at FROM stripe_inbox_wakes) >= now() THEN
        due := clock_timestamp();
    ELSIF p_status = 'unresolved' AND p_park_after_ms IS NOT NULL AND (
        SELECT e.received_at <= clock_timestamp() - make_interval(secs => p_park_after_ms / 1000.0)
        FROM stripe_events e WHERE e.event_id = p_event_id) THEN
        final_status := 'parked';
    END IF;
    UPDATE stripe_events SET
        status = final_status,
        tenant_id = coalesce(p_tenant, tenant_id),
        attempts = attempts + 1,
        failures = failures + CASE WHEN p_status IN ('pending', 'failed') THEN 1 ELSE 0 END,
        last_error = p_note,
        next_attempt_at = due,
        waiting_for = CASE WHEN p_status = 'unresolved' THEN coalesce(p_waiting_for, '{}') END,
        processed_at = CASE WHEN p_status IN ('processed', 'ignored', 'stale') THEN clock_timestamp() END
    WHERE event_id = p_event_id;
    RETURN final_status;
END
$$;
REVOKE ALL ON FUNCTION finish_stripe_event(text, text, uuid, text, bigint, text[], bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION finish_stripe_event(text, text, uuid, text, bigint, text[], bigint) TO billing_rw;

-- These ids were just linked to a tenant (a customer, subscription or payment recorded, a tenant provisioned): the
-- unresolved and parked events waiting for one of them are due now (a parked one becomes unresolved again). Called
-- after the linking transaction committed, outside any claim; rows other workers hold are skipped (they see the
-- wake time when they finish), so no worker ever waits on another here. Returns how many were woken.
CREATE FUNCTION wake_unresolved_stripe_events(p_links text[]) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
DECLARE
    woken integer;
BEGIN
    UPDATE stripe_inbox_wakes SET woken_at = clock_timestamp();
    UPDATE stripe_events SET next_attempt_at = clock_timestamp(), status = 'unresolved'
    WHERE event_id IN (
        SELECT e.event_id FROM stripe_events e
        WHERE ((e.status = 'unresolved' AND e.next_attempt_at > clock_timestamp()) OR e.status = 'parked')
          AND (e.waiting_for && p_links OR e.waiting_for IS NULL)
        FOR UPDATE SKIP LOCKED);
    GET DIAGNOSTICS woken = ROW_COUNT;
    IF woken > 0 THEN
        PERFORM pg_notify('billing_stripe_events', 'unresolved');
    END IF;
    RETURN woken;
END
$$;
REVOKE ALL ON FUNCTION wake_unresolved_stripe_events(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION wake_unresolved_stripe_events(text[]) TO billing_rw;
