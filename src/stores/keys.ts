// The key scheme, in one place. Keys of one user share a {hash tag} so multi-key scripts work in Redis Cluster.

export const keys = {
  browserJar: (browserId: string) => `jar:{${browserId}}`,
  /** A password login of the browser on its way to the portal, then its outcome (briefly): see LoginService. */
  loginInFlight: (browserId: string) => `jar:{${browserId}}:login`,
  pendingLogin: (id: string) => `pending:{${id}}`,
  pendingAttempts: (id: string) => `pending:{${id}}:attempts`,
  /** The set-up tries of a pending login (the passkeys it registers): see Attempts.beginSetup. */
  pendingSetupTries: (id: string) => `pending:{${id}}:setup-tries`,
  /** The passkey registration options a pending login fetched: see Attempts.beginOptions. */
  pendingSetupOptions: (id: string) => `pending:{${id}}:setup-options`,
  /** The passkey sign-in options a pending login fetched: see Attempts.beginOptions. */
  pendingSignInOptions: (id: string) => `pending:{${id}}:sign-in-options`,
  /** A pending login just finished, for a second submission of the form that finished it (see PendingService.twin). */
  pendingFinished: (id: string) => `pending:{${id}}:finished`,
  pendingFinishing: (id: string) => `pending:{${id}}:finishing`,
  session: (sid: string) => `session:{${sid}}`,
  /** Forward-auth mode: when a password last went to the portal with this portal cookie (see portalCookieIds). */
  portalCookieLogin: (id: string) => `portal-cookie:{${id}}:login`,
  /** A session a step-up just moved to a new id, for a second submission of the step-up form (see SessionService.twin). */
  sessionMoved: (sid: string) => `session:{${sid}}:moved`,
  sessionMoving: (sid: string) => `session:{${sid}}:moving`,
  /** The id a step-up moved a session to, for the portal answers still on their way for the old one. */
  sessionMovedTo: (sid: string) => `session:{${sid}}:moved-to`,
  /** A session ended (logout) lately: a step-up that took it at that moment does not start its new one. */
  sessionEnded: (sid: string) => `session:{${sid}}:ended`,
  factors: (pid: string) => `user:{${pid}}:factors`,
  /** New recovery codes just made on the security page, for a second submission of its form (see FactorService). */
  recoveryCodesMade: (pid: string) => `user:{${pid}}:recovery-codes-made`,
  recoveryCodesMaking: (pid: string) => `user:{${pid}}:recovery-codes-making`,
  /** When an operator last removed the user's factors (a reset, an erasure): a first factor of a sign-in begun before is taken back. */
  factorsRemoved: (pid: string) => `user:{${pid}}:factors-removed`,
  userSessions: (pid: string) => `user:{${pid}}:sessions`,
  /** When the user's sessions were last all ended: a sign-in or step-up begun before then starts no session. */
  userSessionsEnded: (pid: string) => `user:{${pid}}:sessions-ended`,
  /** When every session was last ended (`sessions revoke --all`), likewise. */
  allSessionsEnded: () => '{sessions}:ended',
  totpStep: (pid: string) => `user:{${pid}}:totp-step`,
  /** The ceremony (a sign-in in progress, a session) a step went to: see ReplayGuard.claimStep. */
  totpStepClaimant: (pid: string, step: number) => `user:{${pid}}:totp-step-claimant:${step}`,
  /**
   * The TOTP replay mark of one secret being set up (a first enrolment or an app added from the security page), named
   * by a digest of that secret (`setup`), never the secret itself. A plain number, not sealed.
   */
  totpSetupStep: (pid: string, setup: string) => `user:{${pid}}:totp-setup-step:${setup}`,
  /** The ceremony a step of a set-up went to: see ReplayGuard.claimSetupStep. */
  totpSetupClaimant: (pid: string, setup: string, step: number) => `user:{${pid}}:totp-setup-claimant:${setup}:${step}`,
  credentialOwner: (credentialId: string) => `webauthn-credential:{${credentialId}}`,
  credentialOwnerPrefix: () => 'webauthn-credential:{',
  enrolmentCode: (pid: string) => `user:{${pid}}:enrolment-code`,
  challenge: (owner: string, ceremony: string) => `challenge:{${owner}}:${ceremony}`,
  device: (fingerprint: string) => `device:{${fingerprint}}`,
  deviceIndex: () => 'devices:index',
  stepUpAttempts: (sid: string) => `session:{${sid}}:step-up-attempts`,
  /** The set-up tries of a session (the apps and passkeys it adds): see Attempts.beginSetup. */
  sessionSetupTries: (sid: string) => `session:{${sid}}:setup-tries`,
  /** The passkey registration options a session fetched: see Attempts.beginOptions. */
  sessionSetupOptions: (sid: string) => `session:{${sid}}:setup-options`,
  /** The passkey step-up options a session fetched: see Attempts.beginOptions. */
  stepUpOptions: (sid: string) => `session:{${sid}}:step-up-options`,
  /** A TOTP secret being set up from the security page, per session (by its sign-in time, which a step-up keeps). */
  factorSetup: (pid: string, authTime: number) => `user:{${pid}}:factor-setup:${authTime}`,
  // Limits: per account and per client address, each with its own hash tag; global ones share {login}.
  passwordFailures: (pid: string) => `user:{${pid}}:failures:password`,
  /** The password failures of one known browser of the account (its own count: see mechanisms/known-browser.ts). */
  knownBrowserFailures: (pid: string, browser: string) => `user:{${pid}}:failures:password:${browser}`,
  /** Changed at a factor reset or a revocation: the account's known-browser tokens given before stop counting. */
  knownBrowserEpoch: (pid: string) => `user:{${pid}}:known-browser-epoch`,
  factorFailures: (pid: string, kind: string) => `user:{${pid}}:failures:${kind}`,
  addressFailures: (address: string) => `addr:{${address}}:failures:password`,
  addressRate: (address: string) => `addr:{${address}}:login-rate`,
  newBrowserRate: (address: string) => `addr:{${address}}:new-browsers`,
  newBrowsersOverall: () => '{login}:new-browsers',
  addressUsernames: (address: string) => `addr:{${address}}:usernames`,
  addressPrefix: () => 'addr:{',
  addressBlock: (address: string) => `addr:{${address}}:blocked`,
  globalRate: () => '{login}:rate',
  loginTightened: () => '{login}:tightened',
  loginStats: (minute: number, what: 'successes' | 'failures') => `{login}:stats:${minute}:${what}`,
  blockIndex: () => '{login}:blocked-addresses',
  lockoutIndex: () => '{login}:locked-factors',
  proofCodeSends: (pid: string) => `user:{${pid}}:proof-code-sends`,
  proofCodeSendsDaily: (pid: string) => `user:{${pid}}:proof-code-sends:daily`,
  /** A recovery code used, kept for good; its value is the ceremony it went to (see SecondFactorService). */
  recoveryCodeUsed: (pid: string, setSalt: string, index: number) => `user:{${pid}}:recovery-used:${setSalt}:${index}`,
  recoveryCodeUsedPrefix: (pid: string) => `user:{${pid}}:recovery-used:`,
  /** When the store first saw a configured key (for key ages in `keys status` and the report). */
  keySeen: (purpose: string, id: string) => `keys:first-seen:${purpose}:${id}`,
} as const;

// Keys whose values are sealed records (opened with the key name as associated data): what key rotation re-seals.
const SEALED = [
  /^jar:\{[^}]+\}$/,
  /^pending:\{[^}]+\}(:finished)?$/,
  /^session:\{[^}]+\}(:moved)?$/,
  /^user:\{[^}]+\}:(factors|enrolment-code|factor-setup:\d+|recovery-codes-made)$/,
  /^challenge:\{.+\}:(register|authenticate)$/,
  /^device:\{[^}]+\}$/,
  /^devices:index$/,
];

export const isSealedKey = (key: string): boolean => SEALED.some((re) => re.test(key));
