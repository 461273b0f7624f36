// The security page's changes: rename or remove a factor, new recovery codes, signing out other devices. Each
// needs a second factor within the last 5 minutes (SECURITY R27), which the security page's routes check, once, before
// calling here (their refusal says where its step-up comes back to), and each ends the user's other sessions.
import type { Clock } from '../clock.js';
import { GatewayError } from '../errors.js';
import { newRecoveryCodes } from '../mechanisms/recovery-codes.js';
import { deviceBound, removable, type CredentialOwners, type Factor, type FactorStore, type UserFactors } from '../stores/factor-store.js';
import type { Attempts } from './ceremony.js';
import type { Notifier } from './notifier.js';
import type { SecurityLog } from './security-events.js';
import type { ActiveSession, SessionService } from './sessions.js';
import { factorName } from './enrolment.js';

/** How recent the last second factor must be for a change (NIST SP 800-63B binding: re-authenticate). */
export const CHANGE_WINDOW_MS = 5 * 60_000;
/** A form sent again within this long of the change it made is taken for a double-click (its twin). */
const DOUBLE_SUBMIT_MS = 5000;

export class FactorService {
  constructor(
    private readonly d: {
      clock: Clock;
      factors: FactorStore;
      owners: CredentialOwners;
      sessions: SessionService;
      attempts: Pick<Attempts, 'disabledKinds' | 'clear'>;
      notifier: Notifier;
      security: SecurityLog;
    },
  ) {}

  /** The user's factors, and the kinds disabled for them after too many failures. */
  async list(pid: string): Promise<UserFactors & { disabled: ReadonlySet<string> }> {
    const [factors, disabled] = await Promise.all([this.d.factors.get(pid), this.d.attempts.disabledKinds(pid)]);
    return { ...(factors ?? { factors: [] }), disabled };
  }

  async rename(active: ActiveSession, factorId: string, name: string, ip: string): Promise<void> {
    let factor: Factor | undefined;
    await this.d.factors.update(active.record.pid, (cur) => {
      const current = cur ?? { factors: [] };
      factor = this.find(current, factorId);
      const renamed = { ...factor, name: factorName(name, factor.name) };
      return { ...current, factors: current.factors.map((f) => (f.id === factorId ? renamed : f)) };
    });
    this.d.security('factor_renamed', { pid: active.record.pid, ip, factor: factor!.kind });
    await this.afterChange(active, ip);
  }

  /** Removes a factor; never the last usable one, so the account always keeps a second factor that works. */
  async remove(active: ActiveSession, factorId: string, ip: string): Promise<void> {
    let removed: Factor | undefined;
    const disabled = await this.d.attempts.disabledKinds(active.record.pid);
    // Judged on the factors as they are when written: two removals at once cannot leave the account without one.
    await this.d.factors.update(active.record.pid, (cur) => {
      const current = cur ?? { factors: [] };
      removed = this.find(current, factorId);
      // A passkey marked as copied, or a factor of a disabled kind, proves nothing: it does not count as the one left.
      if (!removable(current.factors, factorId, disabled)) throw new GatewayError('GW_ERR_BAD_REQUEST', 'the last usable factor cannot be removed');
      // The account had a device-bound passkey, also when it was bound before the mark was kept (withPasskey).
      const had = removed.kind === 'webauthn' && deviceBound(removed) ? { hadDeviceBoundKey: true as const } : {};
      return { ...current, factors: current.factors.filter((f) => f.id !== factorId), ...had };
    });
    const factor = removed!;
    if (factor.kind === 'webauthn') await this.d.owners.release(factor.credential.id);
    if (factor.kind === 'webauthn' && deviceBound(factor) && active.record.deviceBound) await this.d.sessions.forgetDeviceBound(active);
    this.d.security('factor_removed', { pid: active.record.pid, ip, factor: factor.kind });
    this.d.notifier.notify({ event: 'factor_removed', user: active.record.username, ip, details: { kind: factor.kind, name: factor.name } });
    await this.afterChange(active, ip);
  }

  /**
   * A new set of ten recovery codes, shown once; the old ones stop working. `replaces` names the set the page showed
   * (recoverySetOf; undefined replaces whatever set there is). When that set is gone already, nothing changes (null):
   * the form was sent again later (Back, then resend), and the codes printed last are the ones that work. The same
   * form sent again at once (a double-click, `form`: its CSRF token and set) gets the codes the first one made, which
   * the browser shows instead of the first answer.
   */
  async newRecoveryCodes(active: ActiveSession, replaces: string | undefined, ip: string, form: string): Promise<string[] | null> {
    const { pid } = active.record;
    const { codes, stored } = await newRecoveryCodes();
    const addedAt = this.d.clock.now();
    const updated = await this.d.factors.update(pid, (cur) => {
      const current = cur ?? { factors: [] };
      return replaces === undefined || recoverySetOf(current) === replaces ? { ...current, recovery: { ...stored, addedAt } } : cur;
    });
    if (updated?.recovery?.salt !== stored.salt) {
      // A set made a moment ago: this is the twin of the form that made it, and waits for its codes (see FormTwins).
      if (!updated?.recovery || addedAt - updated.recovery.addedAt > DOUBLE_SUBMIT_MS) return null;
      await this.d.factors.codesMade.markBusy(pid);
      return (await this.d.factors.codesMade.take(pid, form))?.codes ?? null;
    }
    await this.d.factors.codesMade.put(pid, form, { codes });
    // Recovery codes turned off after too many wrong ones are back with the new set, as another kind is once one of it
    // is added again (63B §3.2.2): the codes guessed at no longer work, and the person has just been shown these.
    await this.d.attempts.clear(pid, 'recovery');
    this.d.security('recovery_codes_regenerated', { pid: active.record.pid, ip });
    this.d.notifier.notify({ event: 'recovery_codes_regenerated', user: active.record.username, ip });
    await this.afterChange(active, ip);
    return codes;
  }

  async signOutOthers(active: ActiveSession, ip: string): Promise<void> {
    const ended = await this.d.sessions.endOthers(active, 'signed-out-elsewhere');
    this.d.security('other_sessions_signed_out', { pid: active.record.pid, ip, ended });
    this.d.notifier.notify({ event: 'other_sessions_signed_out', user: active.record.username, ip, details: { ended } });
  }

  /** A change to the factors ends the user's other sessions (ASVS 7.4.3): whoever else was in must sign in again. */
  async afterChange(active: ActiveSession, ip: string): Promise<void> {
    const ended = await this.d.sessions.endOthers(active, 'factors-changed');
    if (ended) this.d.security('other_sessions_signed_out', { pid: active.record.pid, ip, ended });
  }

  private find(f: UserFactors, factorId: string): Factor {
    const factor = f.factors.find((x) => x.id === factorId);
    if (!factor) throw new GatewayError('GW_ERR_BAD_REQUEST', 'no such factor');
    return factor;
  }
}

/** Which recovery code set a user has (when it was made; '' for none), named by the page that offers to replace it. */
export function recoverySetOf(f: UserFactors): string {
  return f.recovery ? String(f.recovery.addedAt) : '';
}
