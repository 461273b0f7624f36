// The TOTP replay guard: a time step accepted once per user, across pending logins and instances.
import type { KvStore } from './kv-store.js';
import { keys } from './keys.js';

// Long enough to outlive the ±1 step window by far; after it, an old step cannot verify anyway.
const STEP_TTL_MS = 10 * 60_000;

/** A TOTP time step is accepted at most once per user (RFC 6238 §5.2), atomically, and never an older one. */
export class ReplayGuard {
  constructor(private readonly kv: KvStore) {}
  /**
   * Accepts `step` for the user once. Refused, it tells whether the step itself was accepted and only the ceremony
   * `by` (a sign-in in progress, a session) ever tried it: then it went to this same ceremony (a form sent twice with
   * its code), since every claimant notes its try before it claims. Any other ceremony's try, and it may be a replay.
   */
  async claimStep(pid: string, step: number, by: string): Promise<'claimed' | 'repeat' | 'taken'> {
    const tries = keys.totpStepTries(pid, step);
    await this.kv.setAdd(tries, by, STEP_TTL_MS);
    if (await this.kv.raiseTo(keys.totpStep(pid), step, STEP_TTL_MS)) return 'claimed';
    const [mark, triedBy] = await Promise.all([this.kv.get(keys.totpStep(pid)), this.kv.setMembers(tries)]);
    return Number(mark) === step && triedBy.length === 1 && triedBy[0] === by ? 'repeat' : 'taken';
  }

  /**
   * The first code of a secret being set up: a step is accepted at most once per set-up (`setup` names it, without
   * its secret), atomically, so of two parallel submissions of one code only one binds the app. The user's own mark
   * is not asked: the code the user's other app just gave for the same step (a step-up, usually) takes nothing from
   * a new app's. Then the user's mark is raised to the step (never lowered, whether or not it moved), so the code that
   * set the app up cannot also sign in once the app is bound.
   */
  async claimSetupStep(pid: string, setup: string, step: number): Promise<boolean> {
    if (!(await this.kv.raiseTo(keys.totpSetupStep(pid, setup), step, STEP_TTL_MS))) return false;
    // A try of the step too: a sign-in's code for it then finds it taken by another (see claimStep).
    await this.kv.setAdd(keys.totpStepTries(pid, step), `setup:${setup}`, STEP_TTL_MS);
    await this.kv.raiseTo(keys.totpStep(pid), step, STEP_TTL_MS);
    return true;
  }
}
