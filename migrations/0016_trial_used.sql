-- A tenant gets one free trial: the first time any of its subscriptions is trialing, the tenant is marked, and a
-- later subscription Checkout carries no trial. Marked by the database itself, however the row was written (a
-- webhook, reconciliation, a replay); tenants with a trialing subscription now are marked at once.
ALTER TABLE tenants ADD COLUMN trial_used_at timestamptz;
GRANT UPDATE (trial_used_at) ON tenants TO billing_rw;

CREATE FUNCTION mark_trial_used() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER
SET search_path = billing, pg_temp
AS $$
BEGIN
    UPDATE tenants SET trial_used_at = now() WHERE id = NEW.tenant_id AND trial_used_at IS NULL;
    RETURN NEW;
END;
$$;

CREATE TRIGGER subscriptions_mark_trial_used
    AFTER INSERT OR UPDATE OF status ON subscriptions
    FOR EACH ROW WHEN (NEW.status = 'trialing')
    EXECUTE FUNCTION mark_trial_used();

UPDATE tenants t SET trial_used_at = now()
    WHERE EXISTS (SELECT 1 FROM subscriptions s WHERE s.tenant_id = t.id AND s.status = 'trialing');
