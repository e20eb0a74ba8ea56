-- The card a tenant saved through Checkout in setup mode: what our own invoices charge off-session.
ALTER TABLE tenants ADD COLUMN default_payment_method text;
ALTER TABLE tenants ADD COLUMN default_payment_method_at timestamptz;
GRANT UPDATE (default_payment_method, default_payment_method_at) ON tenants TO billing_rw;
