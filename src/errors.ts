// The error catalogue: every failure the gateway answers with has a stable code, a status and a public message.

export const ERRORS = {
  GW_ERR_BAD_REQUEST: { status: 400, message: 'The request could not be understood.' },
  GW_ERR_BAD_PATH: { status: 400, message: 'The address is not valid.' },
  GW_ERR_SIGN_IN_REQUIRED: { status: 401, message: 'Please sign in.' },
  GW_ERR_STEP_UP_REQUIRED: { status: 401, message: 'For your security, please confirm it is you, then try again.' },
  GW_ERR_CSRF: { status: 403, message: 'This form has expired. Please go back and try again.' },
  GW_ERR_ACCESS_DENIED: { status: 403, message: 'You do not have access to this page.' },
  GW_ERR_LEGACY_AUTH: { status: 403, message: "This way of signing in is not supported. Please use the portal's sign-in page." },
  GW_ERR_DEVICE_NOT_MANAGED: { status: 403, message: 'This page can only be opened on a device managed by your organisation.' },
  GW_ERR_LOGIN_EXPIRED: { status: 403, message: 'Your sign-in has expired. Please sign in again.' },
  GW_ERR_NOT_FOUND: { status: 404, message: 'Page not found.' },
  GW_ERR_METHOD_NOT_ALLOWED: { status: 405, message: 'This method is not allowed here.' },
  GW_ERR_PAYLOAD_TOO_LARGE: { status: 413, message: 'The request is too large.' },
  GW_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'The request format is not supported.' },
  GW_ERR_UNKNOWN_HOST: { status: 421, message: 'This address is not served here.' },
  GW_ERR_TOO_MANY_ATTEMPTS: { status: 429, message: 'Too many incorrect codes. Please sign in again.' },
  GW_ERR_INTERNAL: { status: 500, message: 'Something went wrong. Please try again later.' },
  GW_ERR_UPSTREAM_UNAVAILABLE: { status: 502, message: 'The portal is not reachable right now. Please try again later.' },
  GW_ERR_STORE_UNAVAILABLE: { status: 503, message: 'Sign-in is temporarily unavailable. Please try again in a few minutes.' },
  GW_ERR_UPSTREAM_TIMEOUT: { status: 504, message: 'The portal took too long to answer. Please try again later.' },
} as const satisfies Record<string, { status: number; message: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** A failure with a stable code; the detail stays in the log, the public message goes to the client. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly publicMessage: string;

  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(detail ?? ERRORS[code].message, options);
    this.name = 'GatewayError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.publicMessage = ERRORS[code].message;
  }
}
