// Signed webhooks to the portal vendor: "was this you?" notifications and enrolment-code delivery. Notifications are
// retried a bounded number of times in the background and never hold up a sign-in; an enrolment code is tried once,
// while the person waits for it.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { request } from 'undici';
import type { Clock } from '../clock.js';
import { newId } from '../mechanisms/random.js';
import type { Metrics, NotificationFailure } from '../metrics/metrics.js';

/** Every event for the vendor to tell the user of (the README's Notifications table has a row for each). */
export const NOTIFICATION_EVENTS = [
  'enrolled',
  'factor_added',
  'factor_removed',
  'recovery_code_used',
  'recovery_codes_regenerated',
  'second_factor_failed',
  'second_factor_abandoned',
  'second_factor_replayed',
  'webauthn_counter_regression',
  'other_sessions_signed_out',
  'factor_locked',
  'factors_reset',
] as const;
export type NotificationEvent = (typeof NOTIFICATION_EVENTS)[number];

/** Alerts for the operator: attacks on the login, not about one user. */
export const ALERT_EVENTS = ['address_blocked', 'login_failure_surge'] as const;
export type AlertEvent = (typeof ALERT_EVENTS)[number];

export interface Notification {
  event: NotificationEvent;
  /** The portal username, so the vendor can reach the person through the portal's own channel. */
  user: string;
  /** The address the request came from; none for an operator's action. */
  ip?: string;
  details?: Record<string, string | number | boolean>;
}

export interface WebhookTarget {
  url: string;
  secret: string;
}

const HEADER = 'x-mfa-signature';

/** `t=<unix seconds>,v1=<hex HMAC-SHA-256 of "<t>.<body>">` (the timestamp makes a captured call useless later). */
export function signatureHeader(body: string, secret: string, nowMs: number): string {
  const t = Math.floor(nowMs / 1000);
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

/** What a receiver does: the signature matches and the timestamp is within `toleranceSeconds` of now. */
export function verifySignature(body: string, header: string, secret: string, nowMs: number, toleranceSeconds = 300): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  if (!m) return false;
  const expected = createHmac('sha256', secret).update(`${m[1]}.${body}`).digest();
  const given = Buffer.from(m[2]!, 'hex');
  return Math.abs(nowMs / 1000 - Number(m[1])) <= toleranceSeconds && timingSafeEqual(expected, given);
}

// Deliveries running or waiting for a retry at once: beyond, new ones are dropped (and logged). Alerts come from
// attacks on the login, so an endpoint that is down or slow must not let them pile up.
const MAX_DELIVERIES = 200;

/**
 * How one POST went: delivered, or why not (the receiver's status, or the error's code: never its message, which may
 * name the URL, and a URL may carry a token), so that a wrong secret, a TLS error and a receiver down read apart; and
 * whether trying again may go through.
 */
export type Delivery = { delivered: true } | { delivered: false; why: string; retry: boolean };

/**
 * A receiver's status that trying again cannot change: a 3xx (redirects are not followed, so a URL that moved fails
 * every time) or a 4xx (a wrong secret or URL, a body it does not take), but 408 and 429, which ask for a later try.
 */
export function refusedForGood(status: number): boolean {
  return status >= 300 && status < 500 && status !== 408 && status !== 429;
}

/** Why a receiver's answer is not a delivery; a redirect says it was not followed (never where to: it may hold a token). */
function statusWhy(status: number): string {
  return status >= 300 && status < 400 ? `status ${status} (redirect not followed)` : `status ${status}`;
}

/** What the log says of an event that will not be delivered, by the reason counted. */
const NOT_DELIVERED: Record<NotificationFailure, string> = {
  refused: 'webhook not delivered: refused',
  failed: 'webhook not delivered: giving up',
  dropped: 'webhook not delivered: too many deliveries waiting',
  shutdown: 'webhook not delivered: shutting down',
};

export class Webhooks {
  /** Deliveries running or waiting for a retry, with their event and whether it was logged as lost. */
  private readonly inFlight = new Map<Promise<void>, { event: string; lost: boolean }>();
  /** Set at shutdown: deliveries waiting for a retry (woken by `wakers`) try at once, and for the last time. */
  private closing = false;
  private readonly wakers = new Set<() => void>();

  constructor(
    private readonly d: { clock: Clock; log: Logger; metrics: Metrics; timeoutMs: number; retries: number; retryDelayMs: number },
  ) {}

  /**
   * One signed POST; delivered when the receiver answered 2xx, within the delivery time whatever the receiver does
   * (the timeout covers connecting, the answer and its body: undici's own timeouts are per pause, and a receiver
   * sending a byte now and then would never reach them).
   */
  async post(target: WebhookTarget, payload: object): Promise<Delivery> {
    const body = JSON.stringify(payload);
    try {
      const res = await request(target.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', [HEADER]: signatureHeader(body, target.secret, this.d.clock.now()) },
        body,
        signal: AbortSignal.timeout(this.d.timeoutMs),
      });
      // The answer's body says nothing more; read (so the connection can serve the next call) until the deadline.
      await res.body.dump().catch(() => {});
      return res.statusCode >= 200 && res.statusCode < 300
        ? { delivered: true }
        : { delivered: false, why: statusWhy(res.statusCode), retry: !refusedForGood(res.statusCode) };
    } catch (err) {
      // Node's and undici's codes are words (ECONNREFUSED); the timeout's is a number (23, of DOMException): its name
      // (TimeoutError) says it.
      const { code, name } = err as { code?: unknown; name?: unknown };
      return { delivered: false, why: typeof code === 'string' ? code : String(name ?? 'error'), retry: true };
    }
  }

  /**
   * Delivers in the background with bounded retries (none after a refusal for good); failures are logged, never
   * thrown; events not delivered are counted.
   */
  send(target: WebhookTarget, payload: { event: string; [field: string]: unknown }): void {
    if (this.inFlight.size >= MAX_DELIVERIES) {
      this.lose({ event: payload.event, lost: false }, 'dropped', { waiting: this.inFlight.size });
      return;
    }
    const entry = { event: payload.event, lost: false };
    const job = (async () => {
      for (let attempt = 1; attempt <= this.d.retries + 1; attempt++) {
        const delivery = await this.post(target, payload);
        if (delivery.delivered) return;
        // Refused for good: the same call again gets the same answer, so it is not sent again (one line, with why).
        if (!delivery.retry) return this.lose(entry, 'refused', { attempt, why: delivery.why });
        this.d.log.warn({ webhook: payload.event, attempt, why: delivery.why }, 'webhook delivery failed');
        if (attempt > this.d.retries) break;
        // Its retries cut short by the shutdown: lost (settle may have said so already).
        if (this.closing) return this.lose(entry, 'shutdown');
        await new Promise<void>((r) => {
          const done = () => (clearTimeout(timer), this.wakers.delete(done), r());
          const timer = setTimeout(done, this.d.retryDelayMs * 2 ** (attempt - 1)).unref();
          this.wakers.add(done);
        });
      }
      this.lose(entry, 'failed');
    })();
    this.inFlight.set(job, entry);
    void job.finally(() => this.inFlight.delete(job));
  }

  /**
   * At shutdown: deliveries waiting for a retry try once more at once; waits for them, at most `maxMs` (shutdown must
   * not hang on a vendor endpoint). Those still not delivered then are logged: the process ends without them.
   */
  async settle(maxMs = 2000): Promise<void> {
    this.closing = true;
    for (const wake of [...this.wakers]) wake();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all([...this.inFlight.keys()]), new Promise((r) => (timer = setTimeout(r, maxMs)))]);
    clearTimeout(timer);
    for (const entry of this.inFlight.values()) this.lose(entry, 'shutdown');
  }

  /** An event that will not be delivered: logged and counted once, whoever finds it lost first. */
  private lose(entry: { event: string; lost: boolean }, reason: NotificationFailure, fields: Record<string, unknown> = {}): void {
    if (entry.lost) return;
    entry.lost = true;
    this.d.log.error({ webhook: entry.event, ...fields }, NOT_DELIVERED[reason]);
    this.d.metrics.notificationFailure(reason);
  }
}

/** The notify webhook: one event per security-relevant change, for the vendor to tell the user. */
export class Notifier {
  constructor(
    private readonly webhooks: Webhooks,
    private readonly target: WebhookTarget | null,
    private readonly clock: Clock,
  ) {}

  // `id`, the same in every retry of an event: a receiver whose answer came too late gets the event again, and drops it.
  notify(n: Notification): void {
    if (!this.target) return;
    this.webhooks.send(this.target, { id: newId(), ...n, time: new Date(this.clock.now()).toISOString() });
  }

  alert(event: AlertEvent, details: Record<string, string | number | boolean>): void {
    if (!this.target) return;
    this.webhooks.send(this.target, { id: newId(), event, alert: true, details, time: new Date(this.clock.now()).toISOString() });
  }
}
