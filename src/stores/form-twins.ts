// The outcome of a form just completed, kept briefly for a second submission of the very same form: a second tap on a
// phone sends the form again while the first answer (which carried the new cookie) is on its way, and the browser
// drops that answer and shows the second one.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Sealer } from '../mechanisms/sealer.js';
import type { KvStore } from './kv-store.js';
import { SealedRecords } from './sealed-records.js';

// How long an outcome is kept, and how long a second submission waits for one being reached: up to 3 s, as the first
// may take a store round trip or two more than usual on a busy store (one second was seen to run out under load, and
// the second tap was then told its sign-in had expired).
const TWIN_KEEP_MS = 30_000;
const TWIN_WAIT = { rounds: 60, ms: 50 };

/** Outcomes by id; a record that names a user has their `pid` at its top, as every sealed record does (see AdminService.erase). */
export class FormTwins<T extends object> {
  private readonly records: SealedRecords<T & { form: string }>;

  constructor(
    private readonly kv: KvStore,
    sealer: Sealer,
    private readonly keyOf: { outcome: (id: string) => string; busy: (id: string) => string },
  ) {
    this.records = new SealedRecords(kv, sealer);
  }

  /** `id` is being completed: a second submission arriving meanwhile waits for the outcome (see take). */
  async markBusy(id: string): Promise<void> {
    await this.kv.set(this.keyOf.busy(id), '1', TWIN_WAIT.rounds * TWIN_WAIT.ms);
  }

  /** The outcome of `id`, reached by `form` (what the person sent, with the CSRF token of the page). */
  async put(id: string, form: string, value: T): Promise<void> {
    await this.records.put(this.keyOf.outcome(id), { ...value, form: digest(form) }, TWIN_KEEP_MS);
    await this.kv.delete(this.keyOf.busy(id));
  }

  /**
   * The outcome for a second submission of the same form, once. Any other form ends the chance (a double tap sends the
   * same one, so nobody can try codes against it): null then, and whenever nothing is being completed or was.
   */
  async take(id: string, form: string): Promise<T | null> {
    for (let round = 0; ; round++) {
      const kept = await this.records.take(this.keyOf.outcome(id));
      if (kept) {
        // A mark the twin set itself, after the outcome was put (see FactorService.newRecoveryCodes), goes too.
        await this.kv.delete(this.keyOf.busy(id));
        const { form: sent, ...value } = kept;
        return sameDigest(sent, digest(form)) ? (value as unknown as T) : null;
      }
      if (round >= TWIN_WAIT.rounds || (await this.kv.get(this.keyOf.busy(id))) === null) return null;
      await new Promise((r) => setTimeout(r, TWIN_WAIT.ms));
    }
  }
}

function digest(form: string): string {
  return createHash('sha256').update(form).digest('hex');
}

function sameDigest(a: string, b: string): boolean {
  return a.length === b.length && timingSafeEqual(Buffer.from(a), Buffer.from(b));
}
