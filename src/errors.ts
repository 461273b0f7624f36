// The error catalogue: every failure the gateway answers with has a stable code and a status; its public message,
// in each language, is `error.<code>` in the message catalogue (src/ui/locales).

export const ERRORS = {
  GW_ERR_BAD_REQUEST: { status: 400 },
  GW_ERR_BAD_PATH: { status: 400 },
  GW_ERR_SIGN_IN_REQUIRED: { status: 401 },
  GW_ERR_STEP_UP_REQUIRED: { status: 401 },
  GW_ERR_CSRF: { status: 403 },
  GW_ERR_ACCESS_DENIED: { status: 403 },
  GW_ERR_LEGACY_AUTH: { status: 403 },
  GW_ERR_DEVICE_NOT_MANAGED: { status: 403 },
  GW_ERR_LOGIN_EXPIRED: { status: 403 },
  GW_ERR_FACTOR_LOCKED: { status: 403 },
  GW_ERR_NOT_FOUND: { status: 404 },
  GW_ERR_METHOD_NOT_ALLOWED: { status: 405 },
  GW_ERR_REQUEST_TIMEOUT: { status: 408 },
  GW_ERR_PAYLOAD_TOO_LARGE: { status: 413 },
  GW_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415 },
  GW_ERR_SIGNED_IN_MEANWHILE: { status: 409 },
  GW_ERR_UNKNOWN_HOST: { status: 421 },
  GW_ERR_HEADERS_TOO_LARGE: { status: 431 },
  GW_ERR_TOO_MANY_ATTEMPTS: { status: 429 },
  GW_ERR_RATE_LIMITED: { status: 429 },
  GW_ERR_INTERNAL: { status: 500 },
  GW_ERR_UPSTREAM_UNAVAILABLE: { status: 502 },
  GW_ERR_CODE_NOT_SENT: { status: 502 },
  GW_ERR_LOGIN_UNRECOGNISED: { status: 502 },
  GW_ERR_STORE_UNAVAILABLE: { status: 503 },
  GW_ERR_PORTAL_BUSY: { status: 503 },
  GW_ERR_SHUTTING_DOWN: { status: 503 },
  GW_ERR_UPSTREAM_TIMEOUT: { status: 504 },
} as const satisfies Record<string, { status: number }>;

export type ErrorCode = keyof typeof ERRORS;

/** A failure with a stable code; the detail stays in the log, only the code's public message goes to the client. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;

  /** Sent as Retry-After (429 and 503 answers that know when to come back). */
  readonly retryAfterSeconds: number | undefined;

  /**
   * A step-up a rule asks for (GW_ERR_STEP_UP_REQUIRED): the kinds of factor it takes, so that the step-up page the
   * error page leads to offers only those (a factor the rule does not take would step up, and be asked again).
   */
  readonly factors: readonly string[] | undefined;

  /**
   * Where a new sign-in goes on to (GW_ERR_SIGN_IN_REQUIRED): the page a form sent after its session ended was on its
   * way to, already checked as a return target, so that the error page's link to the login page carries it.
   */
  readonly next: string | undefined;

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown; retryAfterMs?: number; factors?: readonly string[]; next?: string }) {
    // A refusal (4xx) is an answer, not a fault: no stack trace, which costs more than the rest of a refused request.
    const depth = Error.stackTraceLimit;
    if (ERRORS[code].status < 500) Error.stackTraceLimit = 0;
    super(detail ?? code, options);
    Error.stackTraceLimit = depth;
    this.name = 'GatewayError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.retryAfterSeconds = options?.retryAfterMs === undefined ? undefined : Math.max(1, Math.ceil(options.retryAfterMs / 1000));
    this.factors = options?.factors?.length ? options.factors : undefined;
    this.next = options?.next;
  }
}

/**
 * The code for a portal answer that broke off on its way (undici's errors: `UND_ERR_*` codes, and its HTTP parser's
 * HTTPParserError): a timeout or an unusable answer. Undefined for any other error.
 */
export function portalFailureCode(error: unknown): 'GW_ERR_UPSTREAM_TIMEOUT' | 'GW_ERR_UPSTREAM_UNAVAILABLE' | undefined {
  const { code, name } = (error ?? {}) as { code?: unknown; name?: unknown };
  if (code === 'UND_ERR_BODY_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT') return 'GW_ERR_UPSTREAM_TIMEOUT';
  return (typeof code === 'string' && code.startsWith('UND_ERR_')) || name === 'HTTPParserError' ? 'GW_ERR_UPSTREAM_UNAVAILABLE' : undefined;
}
