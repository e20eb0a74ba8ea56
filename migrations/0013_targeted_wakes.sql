-- A wake used to make every unresolved event due, so each new link re-tried events that can never resolve (other
-- products' customers on the same Stripe account) and the work grew with them. Each unresolved event now names what
-- it waits for: the ids (tenant, customer, subscription, PaymentIntent, charge) whose link to a tenant could resolve
-- it; a wake names what was linked and makes due only the events waiting for one of those. An event recorded
-- unresolved before this (nothing named) is woken by every wake, as before. Backoff retries are unchanged, so a
-- missed wake delays an event and never loses it.
ALTER TABLE stripe_events ADD COLUMN waiting_for text[];
CREATE INDEX stripe_events_waiting ON stripe_events USING gin (waiting_for) WHERE status = 'unresolved';
CREATE INDEX stripe_events_waiting_unnamed ON stripe_events (event_id) WHERE status = 'unresolved' AND waiting_for IS NULL;

DROP FUNCTION finish_stripe_event(text, text, uuid, text, bigint);
DROP FUNCTION wake_unresolved_stripe_events();

-- Records how processing a claimed event ended. `p_status`: processed, ignored, stale, unresolved (due again after
-- p_retry_ms, or at once if unresolved events were woken while this one was being processed; `p_waiting_for` names
-- what it waits for), pending (failed, due again after p_retry_ms) or failed (parked for an operator). Attempts count
-- every try; failures only failed ones.
CREATE FUNCTION finish_stripe_event(
    p_event_id text, p_status text, p_tenant uuid, p_note text, p_retry_ms bigint, p_waiting_for text[]
) RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
DECLARE
    due timestamptz := clock_timestamp() + make_interval(secs => coalesce(p_retry_ms, 0) / 1000.0);
BEGIN
    IF p_status NOT IN ('processed', 'ignored', 'stale', 'unresolved', 'pending', 'failed') THEN
        RAISE EXCEPTION 'finish_stripe_event: unknown status %', p_status;
    END IF;
    IF p_status = 'unresolved' AND (SELECT woken_at FROM stripe_inbox_wakes) >= now() THEN
        due := clock_timestamp();
    END IF;
    UPDATE stripe_events SET
        status = p_status,
        tenant_id = coalesce(p_tenant, tenant_id),
        attempts = attempts + 1,
        failures = failures + CASE WHEN p_status IN ('pending', 'failed') THEN 1 ELSE 0 END,
        last_error = p_note,
        next_attempt_at = due,
        waiting_for = CASE WHEN p_status = 'unresolved' THEN coalesce(p_waiting_for, '{}') END,
        processed_at = CASE WHEN p_status IN ('processed', 'ignored', 'stale') THEN clock_timestamp() END
    WHERE event_id = p_event_id;
END
$$;
REVOKE ALL ON FUNCTION finish_stripe_event(text, text, uuid, text, bigint, text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION finish_stripe_event(text, text, uuid, text, bigint, text[]) TO billing_rw;

-- These ids were just linked to a tenant (a customer, subscription or payment recorded, a tenant provisioned): the
-- unresolved events waiting for one of them are due now. Called after the linking transaction committed, outside
-- any claim; rows other workers hold are skipped (they see the wake time when they finish), so no worker ever waits
-- on another here. Returns how many were woken.
CREATE FUNCTION wake_unresolved_stripe_events(p_links text[]) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = billing, pg_temp
AS $$
DECLARE
    woken integer;
BEGIN
    UPDATE stripe_inbox_wakes SET woken_at = clock_timestamp();
    UPDATE stripe_events SET next_attempt_at = clock_timestamp()
    WHERE event_id IN (
        SELECT e.event_id FROM stripe_events e
        WHERE e.status = 'unresolved' AND e.next_attempt_at > clock_timestamp()
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
