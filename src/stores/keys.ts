// The key scheme, in one place. Keys of one user share a {hash tag} so multi-key scripts work in Redis Cluster.

export const keys = {
  browserJar: (browserId: string) => `jar:{${browserId}}`,
  pendingLogin: (id: string) => `pending:{${id}}`,
  pendingAttempts: (id: string) => `pending:{${id}}:attempts`,
  session: (sid: string) => `session:{${sid}}`,
  factors: (pid: string) => `user:{${pid}}:factors`,
  userSessions: (pid: string) => `user:{${pid}}:sessions`,
  totpStep: (pid: string) => `user:{${pid}}:totp-step`,
  mfaFailures: (pid: string) => `user:{${pid}}:mfa-failures`,
  credentialOwner: (credentialId: string) => `webauthn-credential:{${credentialId}}`,
  enrolmentCode: (pid: string) => `user:{${pid}}:enrolment-code`,
  challenge: (owner: string, ceremony: string) => `challenge:{${owner}}:${ceremony}`,
  device: (fingerprint: string) => `device:{${fingerprint}}`,
  deviceIndex: () => 'devices:index',
  stepUpAttempts: (sid: string) => `session:{${sid}}:step-up-attempts`,
  factorSetup: (sid: string) => `session:{${sid}}:factor-setup`,
  recoveryCodeUsed: (pid: string, setSalt: string, index: number) => `user:{${pid}}:recovery-used:${setSalt}:${index}`,
} as const;
