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
   * again after a claim that timed out but was applied), to `earlier` (the ceremony that signed this session in or
   * stepped it up: the person typing the code they just used) or another (`taken`: it may be a replay). The note is
   * written in the same step as the claim.
   */
  async claimStep(pid: string, step: number, by: string, earlier?: string): Promise<'claimed' | 'repeat' | 'earlier' | 'taken'> {
    // One note per step: only the step's one claimant writes it, so notes of steps claimed together do not cross.
    const claimant = keys.totpStepClaimant(pid, step);
    if (await this.kv.raiseTo(keys.totpStep(pid), step, STEP_TTL_MS, { key: claimant, value: by })) return 'claimed';
    const went = await this.kv.get(claimant);
    return went === by ? 'repeat' : went !== null && went === earlier ? 'earlier' : 'taken';
  }

  /**
   * The first code of a secret being set up: a step is accepted at most once per set-up (`setup` names it, without
   * its secret), atomically, so of two parallel submissions of one code only one binds the app; refused, it tells
   * whether the step went to this same ceremony (`repeat`: the form sent twice) or another (`taken`), as claimStep
   * does. The user's own mark is not asked: the code the user's other app just gave for the same step (a step-up,
   * usually) takes nothing from a new app's. Then the user's mark is raised to the step (never lowered, whether or not
   * it moved), with the note claimStep writes when it raised it, so the code that set the app up cannot also sign in
   * once the app is bound, and is known for the set-up's own when typed again (see claimStep's `earlier`).
   */
  async claimSetupStep(pid: string, setup: string, step: number, by: string): Promise<'claimed' | 'repeat' | 'taken'> {
    const claimant = keys.totpSetupClaimant(pid, setup, step);
    if (!(await this.kv.raiseTo(keys.totpSetupStep(pid, setup), step, STEP_TTL_MS, { key: claimant, value: by }))) {
      return (await this.kv.get(claimant)) === by ? 'repeat' : 'taken';
    }
    await this.kv.raiseTo(keys.totpStep(pid), step, STEP_TTL_MS, { key: keys.totpStepClaimant(pid, step), value: by });
    return 'claimed';
  }
}
