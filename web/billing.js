// The billing page's script: reads the tenant's billing from /rpc with the bearer token the product handed over in
// the URL fragment (#token=...), and lets owners and admins act on it. The token is kept in sessionStorage, sent only
// in the Authorization header, and removed from the address bar as soon as it is read.
'use strict';

(function () {
  const TOKEN_KEY = 'billing.token';
  // How many ledger entries and invoices are shown at a time.
  const PAGE = 10;
  const catalog = JSON.parse(document.getElementById('catalog').textContent);
  const plansByKey = new Map(catalog.plans.map((plan) => [plan.key, plan]));
  const $ = (id) => document.getElementById(id);

  const STATUS_WORDS = {
    active: 'Active', trialing: 'Free trial', past_due: 'Payment overdue', unpaid: 'Unpaid', canceled: 'Canceled',
    incomplete: 'Waiting for the first payment', incomplete_expired: 'Expired before it was paid', paused: 'Paused',
  };
  const INVOICE_WORDS = {
    draft: 'Draft', open: 'Due', processing: 'Payment processing', paid: 'Paid', void: 'Void',
    uncollectible: 'Written off', overdue: 'Overdue', written_off: 'Written off',
    action_required: 'Needs your confirmation: open the invoice to pay it',
  };
  // The API names its own methods in some messages; a person sees the page's words for them.
  const METHOD_WORDS = {
    'billing.topUp': '"Buy credits"', 'billing.checkout': '"Change plan"', 'billing.changePlan': '"Change plan"',
    'billing.setupPaymentMethod': '"Save a card for invoices"', 'billing.updateSeats': '"Change seats"',
    'billing.portal': '"Payment methods and receipts"', 'billing.resume': '"Keep my subscription"',
    'billing.cancel': '"Cancel at period end"', 'tenants.provision': 'your product\'s administrator',
  };

  let token = null;
  // "you are an admin", as the token's role says; the heading names the workspace once billing.status is read.
  let role = '';
  let canManage = false;
  let current = null; // the last billing.status

  // MARK: the token

  // A link's #token= replaces the stored token at once when it is for the same workspace and user (a fresh one), or
  // when there is none still valid. A token for another workspace or user is only offered: the page asks, naming
  // both workspaces, before switching, so that a link from someone else cannot quietly sign this browser in to
  // their workspace (and have the card saved next land there).
  function takeToken() {
    const fragment = new URLSearchParams(location.hash.slice(1));
    const given = fragment.get('token');
    const stored = sessionStorage.getItem(TOKEN_KEY);
    if (!given) return { token: stored };
    history.replaceState(null, '', location.pathname + location.search);
    if (!stored || stored === given || sameHolder(stored, given) || expired(stored)) {
      sessionStorage.setItem(TOKEN_KEY, given);
      return { token: given };
    }
    return { token: stored, offered: given };
  }

  function sameHolder(one, other) {
    const a = claimsOf(one) || {};
    const b = claimsOf(other) || {};
    return Boolean(a.tenant_id) && a.tenant_id === b.tenant_id && a.sub === b.sub;
  }

  function expired(jwt) {
    const claims = claimsOf(jwt);
    return !claims || typeof claims.exp !== 'number' || claims.exp * 1000 <= Date.now();
  }

  function claimsOf(jwt) {
    try {
      const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    } catch (error) {
      return null;
    }
  }

  // MARK: talking to the server

  class PageError extends Error {
    constructor(message, code) {
      super(message);
      this.code = code;
    }
  }

  let nextID = 1;
  async function rpc(method, params, bearer = token) {
    const request = { jsonrpc: '2.0', id: nextID++, method };
    if (params) request.params = params;
    let response;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 30000);
    try {
      response = await fetch('/rpc', {
        method: 'POST', cache: 'no-store', credentials: 'omit', signal: abort.signal,
        headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + bearer },
        body: JSON.stringify(request),
      });
    } catch (error) {
      throw new PageError('The billing server could not be reached. Check your connection and try again.', 'UNREACHABLE');
    } finally {
      clearTimeout(timer);
    }
    let body;
    try {
      body = await response.json();
    } catch (error) {
      throw new PageError('The billing server answered with an error (HTTP ' + response.status + '). Try again in a minute.');
    }
    if (body.error) {
      const code = body.error.data && body.error.data.code;
      if (code === 'UNAUTHORIZED' && bearer === sessionStorage.getItem(TOKEN_KEY)) sessionStorage.removeItem(TOKEN_KEY);
      throw new PageError(explain(body.error), code);
    }
    return body.result;
  }

  function explain(error) {
    const code = error.data && error.data.code;
    switch (code) {
      case 'UNAUTHORIZED':
        return 'Your sign-in has expired. Open the billing page again from the product to continue.';
      case 'FORBIDDEN':
        return 'Your role in this workspace cannot do that. Ask an owner or admin of the workspace.';
      case 'BAD_REQUEST': case undefined:
        return sentence((error.data && error.data.reason) || error.message || 'The request was refused.');
      case 'CONFLICT':
        return sentence(error.message) + ' The page now shows the latest state; check it and try again.';
      case 'BAD_GATEWAY': case 'GATEWAY_TIMEOUT':
        return 'The billing server could not finish in time. Reload the page to see what was done before trying again.';
      case 'INTERNAL_SERVER_ERROR':
        return 'Something went wrong on the billing server. Nothing was changed; try again, and contact support if it keeps happening.';
      default:
        return sentence(error.message || 'The request failed.');
    }
  }

  function sentence(message) {
    let text = message;
    for (const [method, words] of Object.entries(METHOD_WORDS)) text = text.split(method).join(words);
    text = text.charAt(0).toUpperCase() + text.slice(1);
    return /[.!?)]$/.test(text) ? text : text + '.';
  }

  // MARK: showing things

  function show(element, visible) {
    element.hidden = !visible;
  }

  // The two live regions stay in the page (empty ones take no room), so what is written into them is announced.
  function notify(message) {
    $('notice').textContent = message;
  }

  function complain(message) {
    const problem = $('problem');
    problem.textContent = message;
    if (message) problem.focus();
  }

  // As the server writes amounts (USD 19.00, JPY 500): in minor units, with the decimals the server gives for each of
  // the catalog's currencies (two for any other).
  const CURRENCY_DIGITS = JSON.parse(document.getElementById('currency-digits').textContent);

  function money(amount, currency) {
    const code = (currency || '').toLowerCase();
    const digits = CURRENCY_DIGITS[code] ?? 2;
    const sign = amount < 0 ? '-' : '';
    return (code.toUpperCase() + ' ' + sign + (Math.abs(amount) / 10 ** digits).toFixed(digits)).trim();
  }

  function day(iso) {
    // In UTC, as Stripe and this server's invoices date things.
    return iso ? new Date(iso).toLocaleDateString('en', { year: 'numeric', month: 'long', day: 'numeric', timeZone: 'UTC' }) : '';
  }

  function count(n) {
    return new Intl.NumberFormat('en').format(n);
  }

  function planName(key) {
    const plan = plansByKey.get(key);
    return plan ? plan.name : key;
  }

  function intervalWords(interval) {
    return interval === 'year' ? 'billed yearly' : interval === 'month' ? 'billed monthly' : '';
  }

  function isLive(status) {
    return status.interval !== null && status.status !== 'canceled' && status.status !== 'incomplete_expired';
  }

  function renderStatus(status) {
    current = status;
    $('title').textContent = 'Billing for ' + status.tenantName;
    document.title = 'Billing for ' + status.tenantName;
    $('who').textContent = 'Workspace "' + status.tenantName + '"' + (role ? ' · ' + role : '');
    const plan = plansByKey.get(status.plan);
    const live = isLive(status);
    $('plan-name').textContent = planName(status.plan) + (live ? ', ' + intervalWords(status.interval) : '');
    $('plan-status').textContent = (STATUS_WORDS[status.status] || status.status) + (status.entitled ? '' : ' (paid features are off)');
    $('seats').textContent = String(status.seats);
    if (plan) {
      $('seat-range').textContent = plan.seats.min === plan.seats.max
        ? '(' + plan.name + ' has ' + plan.seats.min + (plan.seats.min === 1 ? ' seat)' : ' seats)')
        : '(' + plan.seats.min + ' to ' + plan.seats.max + ' on ' + plan.name + ')';
    }
    const periodEnd = live && status.currentPeriodEnd;
    show($('period-label'), Boolean(periodEnd));
    show($('period-end'), Boolean(periodEnd));
    // A scheduled ending (at the period's end, on a date set at Stripe, or by a schedule) is when it ends.
    $('period-label').textContent = status.cancelAt ? 'Ends on' : status.status === 'trialing' ? 'Trial ends on' : 'Renews on';
    $('period-end').textContent = day(status.cancelAt || status.currentPeriodEnd);
    const pending = status.pendingChange;
    document.querySelectorAll('.pending').forEach((element) => show(element, Boolean(pending)));
    $('pending-change').textContent = pending
      ? planName(pending.plan) + (pending.interval ? ', ' + intervalWords(pending.interval) : '') + ', from ' + day(pending.effectiveAt)
      : '';

    const grace = $('grace');
    const unpaid = status.status === 'past_due' || status.status === 'unpaid';
    if (unpaid && status.entitled && status.graceEndsAt) {
      grace.textContent = 'Your last payment failed. Your plan stays on until ' + day(status.graceEndsAt)
        + '; update your card under "Payment methods and receipts" to keep it.';
    } else if (unpaid && !status.entitled) {
      grace.textContent = 'Your payment failed and the grace period is over: paid features are off until the payment goes through. '
        + 'Update your card under "Payment methods and receipts".';
    } else if (status.pendingUpdate) {
      grace.textContent = 'A change to your subscription is waiting for its payment: your plan and seats stay as they are until '
        + 'the open invoice is paid under "Payment methods and receipts", or the change lapses on ' + day(status.pendingUpdate.expiresAt) + '.';
    } else if (status.status === 'incomplete') {
      grace.textContent = 'The first payment of this subscription has not gone through yet; its features start once it does.';
    } else {
      grace.textContent = '';
    }
    show(grace, Boolean(grace.textContent));

    document.querySelectorAll('.plans li').forEach((item) => item.classList.toggle('current', item.id === 'plan-' + status.plan));
    if (!canManage) return;
    const seatsForm = $('seats-form');
    const adjustable = live && plan && plan.seats.min !== plan.seats.max;
    show(seatsForm, Boolean(adjustable));
    if (adjustable) {
      const input = $('seats-input');
      input.min = plan.seats.min;
      input.max = plan.seats.max;
      input.value = status.seats;
      $('seats-hint').textContent = plan.name + ' allows ' + plan.seats.min + ' to ' + plan.seats.max + ' seats. Stripe prorates the change.';
    }
    $('plan-select').value = status.plan;
    if (status.interval) $('interval-select').value = status.interval;
    show($('cancel'), live && !status.cancelAtPeriodEnd);
    show($('resume'), live && status.cancelAtPeriodEnd);
  }

  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function renderCredits(page) {
    $('credit-balance').textContent = count(page.balance.available);
    const frozen = $('credit-frozen');
    frozen.textContent = page.balance.frozen > 0
      ? count(page.balance.frozen) + ' credits are on hold while a payment dispute is open.' : '';
    show(frozen, page.balance.frozen > 0);
    const debt = $('credit-debt');
    debt.textContent = page.balance.debt > 0
      ? 'You owe ' + count(page.balance.debt) + ' credits; they are taken from your next top-up.' : '';
    show(debt, page.balance.debt > 0);
    $('ledger').tBodies[0].replaceChildren();
    appendLedger(page);
  }

  // Pages after the first are added below ("Show older activity"), by the cursor the last page gave.
  const cursors = { ledger: null, invoices: null };

  function appendLedger(page) {
    const body = $('ledger').tBodies[0];
    for (const entry of page.entries) {
      const row = body.insertRow();
      cell(row, day(entry.createdAt));
      cell(row, entry.reason || entry.kind);
      cell(row, (entry.amount > 0 ? '+' : '') + count(entry.amount), 'n');
      cell(row, count(entry.balanceAfter), 'n');
    }
    cursors.ledger = page.nextCursor || null;
    show($('ledger'), body.rows.length > 0);
    show($('ledger-empty'), body.rows.length === 0);
    show($('ledger-more'), cursors.ledger !== null);
  }

  function renderInvoices(page) {
    $('invoice-list').tBodies[0].replaceChildren();
    appendInvoices(page);
  }

  function appendInvoices(page) {
    const body = $('invoice-list').tBodies[0];
    for (const invoice of page.invoices) {
      const row = body.insertRow();
      const name = invoice.number || 'Invoice';
      const first = row.insertCell();
      // Stripe's hosted invoices open without a sign-in, and so do this server's through the signed link owners and
      // admins are given; a member's link would need the bearer token, so it is not one.
      const opens = invoice.url && (invoice.source === 'stripe' || invoice.url.includes('signature='));
      if (opens) {
        const link = document.createElement('a');
        link.href = invoice.url;
        link.rel = 'noopener noreferrer';
        link.target = '_blank';
        link.textContent = name;
        first.append(link);
      } else {
        first.textContent = name;
      }
      cell(row, invoice.periodStart ? day(invoice.periodStart) + ' to ' + day(invoice.periodEnd) : day(invoice.createdAt));
      cell(row, money(invoice.amountDue, invoice.currency), 'n');
      cell(row, INVOICE_WORDS[invoice.status] || invoice.status);
    }
    cursors.invoices = page.nextCursor || null;
    show($('invoice-list'), body.rows.length > 0);
    show($('invoices-empty'), body.rows.length === 0);
    show($('invoices-more'), cursors.invoices !== null);
  }

  // For every reader, members included: the older pages of the ledger and of the invoices.
  // Reading, not acting: the page's messages stay. A page that arrives after the lists were rendered afresh (a
  // refresh while it loaded) is dropped, since its cursor belongs to the old first page.
  function wirePaging() {
    const more = (button, method, key, append) => button.addEventListener('click', async () => {
      if (button.disabled) return;
      button.disabled = true;
      const rendering = renders;
      try {
        const page = await rpc(method, { limit: PAGE, cursor: cursors[key] });
        if (rendering === renders) append(page);
      } catch (error) {
        complain(error instanceof PageError ? error.message : 'Something went wrong in this page: ' + error.message);
      } finally {
        button.disabled = false;
      }
    });
    more($('ledger-more'), 'billing.credits', 'ledger', appendLedger);
    more($('invoices-more'), 'billing.invoices', 'invoices', appendInvoices);
  }

  // How many times the lists were rendered afresh (paging appends only to the rendering it started from).
  let renders = 0;

  async function refresh() {
    const [status, credits, invoices] = await Promise.all([
      rpc('billing.status'), rpc('billing.credits', { limit: PAGE }), rpc('billing.invoices', { limit: PAGE }),
    ]);
    renders += 1;
    renderStatus(status);
    renderCredits(credits);
    renderInvoices(invoices);
    ['subscription', 'credits', 'invoices'].forEach((id) => show($(id), true));
    doneLoading();
    return { status, credits };
  }

  // MARK: acting

  function randomKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
  }

  // Runs one action with its control disabled, so a double click cannot start it twice; errors are shown in words.
  // A control that sent the browser to Stripe stays disabled while the page unloads.
  let leaving = false;
  async function act(control, action) {
    if (control.disabled || leaving) return;
    control.disabled = true;
    complain('');
    notify('');
    try {
      await action();
    } catch (error) {
      complain(error instanceof PageError ? error.message : 'Something went wrong in this page: ' + error.message);
      if (error.code === 'CONFLICT') await refresh().catch(() => {});
    } finally {
      if (!leaving) control.disabled = false;
    }
  }

  function leaveFor(url) {
    leaving = true;
    notify('Opening Stripe…');
    location.assign(url);
  }

  // One idempotency key per amount until the browser comes back from Checkout: a retry after a lost answer gets the
  // same Checkout Session back instead of a second one.
  function topUpKey(credits) {
    const name = 'billing.topUpKey.' + credits;
    let key = sessionStorage.getItem(name);
    if (!key) {
      key = 'page-' + randomKey();
      sessionStorage.setItem(name, key);
    }
    return key;
  }

  function forgetTopUpKeys() {
    Object.keys(sessionStorage).filter((name) => name.startsWith('billing.topUpKey.')).forEach((name) => sessionStorage.removeItem(name));
  }

  function wire() {
    $('seats-form').addEventListener('submit', (event) => {
      event.preventDefault();
      act($('seats-submit'), async () => {
        const seats = Number($('seats-input').value);
        if (!Number.isInteger(seats)) throw new PageError('Enter the number of seats as a whole number.');
        renderStatus(await rpc('billing.updateSeats', { seats }));
        notify('Seats changed to ' + seats + '.');
      });
    });

    $('plan-form').addEventListener('submit', (event) => {
      event.preventDefault();
      act($('plan-submit'), async () => {
        const plan = plansByKey.get($('plan-select').value);
        const interval = $('interval-select').value;
        if (isLive(current)) {
          if (plan.key === current.plan && interval === current.interval) {
            throw new PageError('You are already on ' + plan.name + ', ' + intervalWords(interval) + '.');
          }
          const status = await rpc('billing.changePlan', { plan: plan.key, interval });
          renderStatus(status);
          notify(status.pendingChange
            ? 'Your plan changes to ' + planName(status.pendingChange.plan) + ' on ' + day(status.pendingChange.effectiveAt) + '.'
            : 'You are now on ' + planName(status.plan) + '.');
        } else if (plan.key === catalog.defaultPlan) {
          throw new PageError('You are already on ' + plan.name + '; it needs no subscription.');
        } else if (plan.billing === 'invoice') {
          renderStatus(await rpc('billing.subscribeByInvoice', { plan: plan.key, interval }));
          notify('You are now on ' + plan.name + '. Invoices are charged to your saved card.');
        } else {
          leaveFor((await rpc('billing.checkout', { plan: plan.key, interval })).checkoutUrl);
        }
      });
    });

    $('cancel').addEventListener('click', () => {
      const ends = day(current.currentPeriodEnd);
      if (!confirm('Cancel your subscription? It stays on until ' + ends + ', then ends.')) return;
      act($('cancel'), async () => {
        renderStatus(await rpc('billing.cancel', { atPeriodEnd: true }));
        notify('Your subscription ends on ' + ends + '. Until then nothing changes, and you can keep it.');
        $('resume').focus();
      });
    });

    $('resume').addEventListener('click', () => {
      act($('resume'), async () => {
        renderStatus(await rpc('billing.resume'));
        notify('Your subscription continues; it renews on ' + day(current.currentPeriodEnd) + '.');
        $('cancel').focus();
      });
    });

    $('portal').addEventListener('click', () => {
      act($('portal'), async () => {
        leaveFor((await rpc('billing.portal', { returnUrl: location.origin + '/billing' })).url);
      });
    });

    $('setup-card').addEventListener('click', () => {
      act($('setup-card'), async () => {
        leaveFor((await rpc('billing.setupPaymentMethod')).checkoutUrl);
      });
    });

    $('topup-form').addEventListener('submit', (event) => {
      event.preventDefault();
      act($('topup-submit'), async () => {
        const credits = Number($('topup-credits').value);
        if (!Number.isInteger(credits)) throw new PageError('Enter the number of credits as a whole number.');
        const started = await rpc('billing.topUp', { credits, idempotencyKey: topUpKey(credits) });
        leaveFor(started.checkoutUrl);
      });
    });
  }

  // MARK: coming back from Stripe's checkout

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function followCheckout(sessionId) {
    forgetTopUpKeys();
    let session;
    try {
      session = await rpc('billing.checkoutSession', { sessionId });
    } catch (error) {
      if (error.code !== 'NOT_FOUND') throw error;
      history.replaceState(null, '', location.pathname);
      throw new PageError('This page was opened with a checkout that this workspace did not start, so there is nothing to wait for.');
    }
    const waiting = (s) => (s.topUp ? s.topUp.status === 'pending' : s.status === 'open')
      || (s.purpose === 'subscription' && s.status === 'complete' && !isLive(current));
    notify(session.purpose === 'credit_topup'
      ? 'Payment processing: waiting for Stripe to confirm your payment of ' + money(session.topUp.amount, session.topUp.currency)
        + ' for ' + count(session.topUp.credits) + ' credits. Your balance updates here by itself.'
      : 'Payment processing: waiting for Stripe to confirm your checkout. This page updates by itself.');
    $('notice').classList.add('processing');
    const deadline = Date.now() + 3 * 60 * 1000;
    let pause = 500;
    while (waiting(session) && Date.now() < deadline) {
      await sleep(pause);
      pause = Math.min(pause * 1.5, 5000);
      try {
        session = await rpc('billing.checkoutSession', { sessionId });
        if (session.purpose === 'subscription' && session.status === 'complete') renderStatus(await rpc('billing.status'));
      } catch (error) {
        // A blip while waiting is not the end of the wait; a sign-in that expired is.
        if (error.code === 'UNAUTHORIZED' || error.code === 'FORBIDDEN') throw error;
      }
    }
    $('notice').classList.remove('processing');
    const { status, credits } = await refresh();
    if (waiting(session)) {
      notify('Stripe has not confirmed this payment yet. If you paid, it shows here once Stripe confirms it; '
        + 'if you left the checkout without paying, nothing was charged.');
      return;
    }
    history.replaceState(null, '', location.pathname);
    const topUp = session.topUp;
    if (topUp && topUp.status === 'paid') {
      notify('Payment received: ' + count(topUp.credits) + ' credits were added. Your balance is now '
        + count(credits.balance.available) + ' credits.');
    } else if (topUp && topUp.status === 'flagged') {
      complain('Stripe took a payment that does not match this top-up, so no credits were added. Support has been told and will settle it.');
    } else if (topUp) {
      complain('The payment did not go through, so no credits were added and nothing was charged. You can try again.');
    } else if (session.status === 'expired') {
      complain('This checkout expired before it was paid; nothing was charged.');
    } else if (session.purpose === 'setup') {
      notify('Your card was saved. Invoices are charged to it.');
    } else {
      notify('Your subscription to ' + planName(status.plan) + ' is ' + (STATUS_WORDS[status.status] || status.status).toLowerCase() + '.');
    }
  }

  // MARK: coming back from an invoice's payment link

  // The payment link of an invoice that needed 3-D Secure returns here with ?invoice=<id> (&canceled=true when the
  // person left without paying). Until Stripe confirms the payment, the page says it is processing.
  async function followInvoice(invoiceId, canceled) {
    // Newest first, a page at a time: an invoice being paid is almost always on the first.
    const find = async () => {
      let cursor;
      for (let pages = 0; pages < 20; pages += 1) {
        const page = await rpc('billing.invoices', cursor ? { limit: 100, cursor } : { limit: 100 });
        const found = (page.invoices || []).find((each) => each.id === invoiceId);
        if (found || !page.nextCursor) return found;
        cursor = page.nextCursor;
      }
      return undefined;
    };
    let invoice = await find();
    if (!invoice) {
      history.replaceState(null, '', location.pathname);
      throw new PageError('This page was opened for an invoice this workspace does not have, so there is nothing to wait for.');
    }
    const settled = (each) => ['paid', 'void', 'written_off', 'uncollectible'].includes(each.status);
    const name = invoice.number ? 'Invoice ' + invoice.number : 'This invoice';
    if (canceled && !settled(invoice)) {
      history.replaceState(null, '', location.pathname);
      complain('You left the payment page without paying; ' + name + ' is still due.'
        + (canManage ? ' Open it from the list below to pay it.' : ''));
      return;
    }
    if (!settled(invoice)) {
      notify('Payment processing: waiting for Stripe to confirm your payment of ' + money(invoice.amountDue, invoice.currency)
        + ' for ' + name + '. This page updates by itself.');
      $('notice').classList.add('processing');
      const deadline = Date.now() + 3 * 60 * 1000;
      let pause = 500;
      while (!settled(invoice) && Date.now() < deadline) {
        await sleep(pause);
        pause = Math.min(pause * 1.5, 5000);
        try {
          invoice = (await find()) || invoice;
        } catch (error) {
          if (error.code === 'UNAUTHORIZED' || error.code === 'FORBIDDEN') throw error;
        }
      }
      $('notice').classList.remove('processing');
    }
    // The list shows what the page read at the start; the invoice may have been paid since.
    await refresh();
    if (!settled(invoice)) {
      notify('Stripe has not confirmed this payment yet. If you paid, ' + name + ' shows as paid once Stripe confirms it.');
      return;
    }
    history.replaceState(null, '', location.pathname);
    if (invoice.status === 'paid') {
      notify(name + ' is paid. Thank you.');
    } else {
      complain(name + ' is ' + (INVOICE_WORDS[invoice.status] || invoice.status).toLowerCase() + '; nothing more is charged for it.');
    }
  }

  // MARK: start

  function doneLoading() {
    show($('loading'), false);
    $('main').setAttribute('aria-busy', 'false');
  }

  // The link offered a token for another workspace or user: ask, naming both workspaces, and answer the token to use.
  async function chooseWorkspace(offered) {
    let theirs;
    try {
      theirs = await rpc('billing.status', null, offered);
    } catch (error) {
      notify('The link you opened carried a sign-in that does not work here; you are still in your own workspace.');
      return token;
    }
    let mine;
    try {
      mine = await rpc('billing.status', null, token);
    } catch (error) {
      if (error.code !== 'UNAUTHORIZED') throw error;
      // The stored sign-in no longer works: the link's is the only one.
      sessionStorage.setItem(TOKEN_KEY, offered);
      return offered;
    }
    const sameWorkspace = mine.tenantId === theirs.tenantId;
    $('switch-text').textContent = 'You are signed in to the billing of "' + mine.tenantName + '". The link you opened signs you in to "'
      + theirs.tenantName + '"' + (sameWorkspace ? ' as someone else' : '') + ' instead. Switch only if you expected to; '
      + 'whatever you do next, such as saving a card or buying credits, happens in the workspace named at the top of the page.';
    $('switch-accept').textContent = 'Switch to "' + theirs.tenantName + '"' + (sameWorkspace ? ' as the other user' : '');
    $('switch-keep').textContent = 'Stay in "' + mine.tenantName + '"';
    show($('loading'), false);
    show($('switch'), true);
    $('switch-keep').focus();
    const switching = await new Promise((resolve) => {
      $('switch-accept').addEventListener('click', () => resolve(true), { once: true });
      $('switch-keep').addEventListener('click', () => resolve(false), { once: true });
    });
    show($('switch'), false);
    show($('loading'), true);
    if (!switching) return token;
    sessionStorage.setItem(TOKEN_KEY, offered);
    return offered;
  }

  async function start() {
    const taken = takeToken();
    token = taken.token;
    if (taken.offered) {
      try {
        token = await chooseWorkspace(taken.offered);
      } catch (error) {
        doneLoading();
        complain(error instanceof PageError ? error.message : 'Something went wrong in this page: ' + error.message);
        return;
      }
    }
    // Asked or not, the question is not asked again on this page.
    $('switch').remove();
    if (!token) {
      doneLoading();
      complain('This page needs a sign-in from the product. Open "Billing" from the product again.');
      return;
    }
    const claims = claimsOf(token) || {};
    if (!claims.tenant_id) {
      doneLoading();
      complain('This page is for a workspace\'s owners, admins and members; this sign-in names no workspace.');
      return;
    }
    canManage = claims.role === 'owner' || claims.role === 'admin';
    role = claims.role ? 'you are ' + (/^[aeiou]/.test(claims.role) ? 'an' : 'a') + ' ' + claims.role : '';
    if (!canManage) {
      document.querySelectorAll('[data-manage]').forEach((element) => element.remove());
      show($('read-only'), true);
    } else {
      wire();
    }
    wirePaging();
    try {
      await refresh();
      const query = new URLSearchParams(location.search);
      if (query.get('invoice')) {
        await followInvoice(query.get('invoice'), query.get('canceled') === 'true');
      } else if (query.get('canceled') === 'true') {
        history.replaceState(null, '', location.pathname);
        notify('Checkout was cancelled; nothing was charged.');
      } else if (query.get('checkout')) {
        await followCheckout(query.get('checkout'));
      }
    } catch (error) {
      doneLoading();
      complain(error instanceof PageError ? error.message : 'Something went wrong in this page: ' + error.message);
    }
  }

  start();
})();
