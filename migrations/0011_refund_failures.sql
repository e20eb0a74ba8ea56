-- A refund can fail after Stripe reported it succeeded (the card was closed, the bank sent the money back): Stripe
-- then lowers the charge's amount_refunded and sends refund.failed. The credits a failed refund took back are given
-- back, so a payment keeps two figures: the highest amount_refunded a charge event has shown, and what is refunded
-- now (that figure less the failed refunds, or the refunds still standing, whichever is more).
ALTER TABLE payments ADD COLUMN charge_amount_refunded bigint NOT NULL DEFAULT 0 CHECK (charge_amount_refunded >= 0);
-- Every tenant's rows: this role is subject to the table's row-level security (FORCE), and no tenant is set here.
ALTER TABLE payments NO FORCE ROW LEVEL SECURITY;
UPDATE payments SET charge_amount_refunded = amount_refunded;
ALTER TABLE payments FORCE ROW LEVEL SECURITY;

-- Why Stripe could not return the money (lost_or_stolen_card, expired_or_canceled_card, declined, ...).
ALTER TABLE refunds ADD COLUMN failure_reason text;

-- A refund's statuses in the order they can follow one another; an event never moves a refund to a lower rank.
CREATE FUNCTION refund_status_rank(p_status text) RETURNS int LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_status
        WHEN 'pending' THEN 0 WHEN 'requires_action' THEN 0
        WHEN 'succeeded' THEN 1
        WHEN 'failed' THEN 2 WHEN 'canceled' THEN 2
        ELSE 0 END
$$;
REVOKE ALL ON FUNCTION refund_status_rank(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refund_status_rank(text) TO billing_rw;
