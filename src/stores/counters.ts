// The TOTP replay guard: a time step accepted once per user, across pending logins and instances.
import type { KvStore } from './kv-store.js';
import { keys } from './keys.js';

// Long enough to outlive the ±1 step window by far; after it, an old step cannot verify anyway.
const STEP_TTL_MS = 10 * 60_000;

/** A TOTP time step is accepted at most once per user (RFC 6238 §5.2), atomically, and never an older one. */
export class ReplayGuard {
  constructor(private readonly kv: KvStore) {}
  /**
   * Accepts `step` for the user once, and notes which ceremony (`by`: a sign-in in progress, a session) it went to.
   * Refused, it tells whether the step went to this same ceremony (`repeat`: a form sent twice with its code, or sent
   * again after a claim that timed out but was applied), to the person's own code typed again (`earlier`: the ceremony
   * that last verified this session's factor, `earlier`, took it, or an app set up by that one or by this one) or to
   * another (`taken`: it may be a replay). The note is written in the same step as the claim.
   */
  async claimStep(pid: string, step: number, by: string, earlier?: string): Promise<'claimed' | 'repeat' | 'earlier' | 'taken'> {
    // One note per step: only the step's one claimant writes it, so notes of steps claimed together do not cross.
    const claimant = keys.totpStepClaimant(pid, step);
    if (await this.kv.raiseTo(keys.totpStep(pid), step, STEP_TTL_MS, { key: claimant, value: by })) return 'claimed';
    const went = await this.kv.get(claimant);
    if (went === by) return 'repeat';
    const own = [setupNote(by), ...(earlier === undefined ? [] : [earlier, setupNote(earlier)])];
    return went !== null && own.includes(went) ? 'earlier' : 'taken';
  }

  /**
   * The first code of a secret being set up: a step is accepted at most once per set-up (`setup` names it, without
   * its secret), atomically, so of two parallel submissions of one code only one binds the app; refused, it tells
   * whether the step went to this same ceremony (`repeat`: the form sent twice) or another (`taken`), as claimStep
   * does. The user's own mark is not asked: the code the user's other app just gave for the same step (a step-up,
   * usually) takes nothing from a new app's. Then the user's mark is raised to the step (never lowered, whether or not
   * it moved), with a note of the set-up when it raised it (never the ceremony's own id: a set-up's success is no
   * code of the user's apps, and must not read as its `repeat`), so the code that set the app up cannot also sign in
   * once the app is bound, and is known for the person's own when typed again (see claimStep's `earlier`).
   */
  async claimSetupStep(pid: string, setup: string, step: number, by: string): Promise<'claimed' | 'repeat' | 'taken'> {
    const claimant = keys.totpSetupClaimant(pid, setup, step);
    if (!(await this.kv.raiseTo(keys.totpSetupStep(pid, setup), step, STEP_TTL_MS, { key: claimant, value: by }))) {
      return (await this.kv.get(claimant)) === by ? 'repeat' : 'taken';
    }
    await this.kv.raiseTo(keys.totpStep(pid), step, STEP_TTL_MS, { key: keys.totpStepClaimant(pid, step), value: setupNote(by) });
    return 'claimed';
  }
}

/** The note of a user's step taken by the set-up of an app in ceremony `by` (see claimSetupStep). */
const setupNote = (by: string): string => `setup:${by}`;
