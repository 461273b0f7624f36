// Every configuration option: type, default and a one-line description. The Config type is derived from it.
import { Type, type Static } from '@sinclair/typebox';
import { PORTAL_METHODS } from '../domain/portal-paths.js';

const Seconds = (def: number, description: string) => Type.Integer({ minimum: 1, default: def, description });
// Seconds a timer runs: at most the longest a Node timer runs (2^31 - 1 ms), as a longer one fires at once (a
// keep-alive of 30 days would close every idle connection after 1 ms); less where someone waits on it.
const TimerSeconds = (def: number, description: string, maximum = 2_147_483) => Type.Integer({ minimum: 1, maximum, default: def, description });

const KeyList = (description: string, idPattern: string) =>
  Type.Array(
    Type.Object(
      {
        id: Type.String({ pattern: idPattern, description: 'Key id, written into tokens and records so keys can be rotated.' }),
        secret: Type.String({ minLength: 43, description: 'At least 32 random bytes, base64 or base64url encoded.' }),
      },
      { additionalProperties: false },
    ),
    { minItems: 1, description },
  );

const PathList = (def: string[], description: string) =>
  Type.Array(Type.String({ pattern: '^/' }), { default: def, description });

const HostPort = Type.Object({ host: Type.String({ minLength: 1 }), port: Type.Integer({ minimum: 1, maximum: 65535 }) }, { additionalProperties: false });

const Rate = (perMinute: number, burst: number, description: string) =>
  Type.Object(
    {
      perMinute: Type.Integer({ minimum: 1, default: perMinute, description: 'Sustained requests per minute.' }),
      burst: Type.Integer({ minimum: 1, default: burst, description: 'Requests allowed at once.' }),
    },
    { default: {}, additionalProperties: false, description },
  );

const Delay = (free: number, baseSeconds: number, maxSeconds: number, description: string, cap?: number) =>
  Type.Object(
    {
      freeAttempts: Type.Integer({ minimum: 0, default: free, description: 'Consecutive failures without any wait.' }),
      baseSeconds: Type.Integer({ minimum: 1, default: baseSeconds, description: 'Wait after the first failure beyond those; it doubles with each further one.' }),
      maxSeconds: Type.Integer({ minimum: 1, default: maxSeconds, description: 'The longest wait between attempts.' }),
      ...(cap === undefined
        ? {}
        : { cap: Type.Integer({ minimum: 1, maximum: 100, default: cap, description: 'Consecutive failures that disable it until it is bound again or an operator clears it (NIST SP 800-63B: at most 100).' }) }),
    },
    { default: {}, additionalProperties: false, description },
  );

const Decision = Type.Union([Type.Literal('public'), Type.Literal('deny'), Type.Literal('mfa'), Type.Literal('managed-device'), Type.Literal('step-up')], {
  description: 'public: no sign-in; deny; mfa: signed in with a second factor; managed-device: mfa on a managed device; step-up: mfa recently.',
});
const Factor = Type.Union([Type.Literal('totp'), Type.Literal('webauthn'), Type.Literal('device-bound-passkey'), Type.Literal('recovery')], {
  description: 'totp: an authenticator app; webauthn: any passkey or security key; device-bound-passkey: one that cannot leave its device (a security key, a passkey that is not synced); recovery: a recovery code.',
});

const Rule = Type.Object(
  {
    name: Type.String({ minLength: 1, description: 'Shown in logs, metrics and `policy explain`.' }),
    hosts: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'Host names (case-insensitive).' })),
    paths: Type.Optional(
      Type.Array(Type.String({ pattern: '^/' }), {
        minItems: 1,
        description: '/x: that path only; /x/ or /x/**: the path and everything below it; * within a segment, ** across segments.',
      }),
    ),
    methods: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z]+$' }), { minItems: 1, description: 'HTTP methods. GET covers HEAD (servers answer HEAD with the GET handler).' })),
    networks: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'Names from `networks`, or addresses and CIDRs.' })),
    groups: Type.Optional(Type.Array(Type.String({ minLength: 1 }), { minItems: 1, description: 'The user must be in one of these groups.' })),
    device: Type.Optional(Type.Union([Type.Literal('managed'), Type.Literal('unmanaged')], { description: 'The device must (not) be managed.' })),
    decision: Decision,
    maxAgeSeconds: Type.Optional(Type.Integer({ minimum: 1, description: 'step-up: the last second factor must be at most this old (default 300).' })),
    factors: Type.Optional(Type.Array(Factor, { minItems: 1, description: 'mfa and step-up: the second factor must be one of these.' })),
    allowLegacyAuth: Type.Optional(Type.Boolean({ description: 'Let HTTP Basic/Digest and login fields in the query or a body through (needs paths and networks); NTLM and Negotiate stay refused.' })),
  },
  { additionalProperties: false },
);

export const ConfigSchema = Type.Object(
  {
    server: Type.Object(
      {
        host: Type.String({ default: '127.0.0.1', minLength: 1, description: 'Address the gateway listens on.' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: 'Port the gateway listens on (0 = any free port).' }),
        prefix: Type.String({
          default: '/_mfa',
          pattern: '^/[a-z0-9_-]+$',
          description: "Reserved path prefix of the gateway's own pages; never forwarded to the portal.",
        }),
        hosts: Type.Array(Type.String({ pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+)$' }), {
          minItems: 1,
          default: ['localhost', '127.0.0.1'],
          description: 'Host names the gateway answers to (case-insensitive, without a port: the port a request names is ignored; IPv6 in brackets); any other Host is refused (421).',
        }),
        trustedProxies: Type.Array(Type.String(), {
          default: [],
          description: 'Addresses/CIDRs of proxies in front of the gateway whose forwarding header (forwardedHeader) and the scheme it goes with (X-Forwarded-Proto, or Forwarded\'s proto=) are believed.',
        }),
        forwardedHeader: Type.Union([Type.Literal('x-forwarded-for'), Type.Literal('forwarded')], {
          default: 'x-forwarded-for',
          description: 'The header the trusted proxies write the client address in: X-Forwarded-For, or RFC 7239 Forwarded. Only that one is read (a proxy passes a client\'s own copy of the other on).',
        }),
        pathParameters: Type.Union([Type.Literal('reject'), Type.Literal('allow')], {
          default: 'reject',
          description: "reject: a ';' path parameter gets 400; allow: kept and forwarded (rules then match the path without them).",
        }),
        requestTimeoutSeconds: TimerSeconds(120, 'A request (headers and body) taking longer is cut off (408).'),
        headersTimeoutSeconds: TimerSeconds(15, 'Request headers (and, with server.tls, a TLS handshake) taking longer are cut off (slow clients).'),
        keepAliveTimeoutSeconds: TimerSeconds(65, 'An idle keep-alive connection is closed after this.'),
        maxHeaderBytes: Type.Integer({ minimum: 4096, maximum: 65536, default: 16384, description: 'Larger request headers get 431.' }),
        maxBodyBytes: Type.Integer({ minimum: 1024, default: 10485760, description: 'Larger request bodies to the portal get 413.' }),
        maxInFlight: Type.Integer({ minimum: 1, default: 512, description: 'Requests waiting for the portal at once; more get 503 at once instead of piling up.' }),
        shutdownDelaySeconds: Type.Integer({
          minimum: 0,
          maximum: 3600,
          default: 0,
          description: 'On SIGTERM, how long the gateway goes on serving while its readiness says 503, so load balancers take it out of service, before it stops taking connections.',
        }),
        shutdownGraceSeconds: TimerSeconds(10, 'On SIGTERM, how long requests in flight may finish before connections are closed.'),
        tls: Type.Optional(
          Type.Object(
            {
              certFile: Type.String({ minLength: 1, description: 'PEM certificate chain.' }),
              keyFile: Type.String({ minLength: 1, description: 'PEM private key.' }),
            },
            { additionalProperties: false, description: 'Terminate TLS in the gateway (needed for client certificates; passkeys need HTTPS).' },
          ),
        ),
      },
      { default: {}, additionalProperties: false, description: 'The listening HTTP server.' },
    ),
    portal: Type.Object(
      {
        url: Type.String({ pattern: '^https?://[^/?#]+/?$', description: 'Origin of the portal behind the gateway, e.g. http://portal.internal:8080.' }),
        name: Type.String({ default: 'Patient portal', description: "Portal name shown on the gateway's pages." }),
        timeoutSeconds: TimerSeconds(30, 'How long the gateway waits for the portal before answering 504.'),
        login: Type.Object(
          {
            paths: PathList(['/login'], "The portal's password login path(s), intercepted by the gateway."),
            methods: Type.Array(Type.Union([Type.Literal('POST'), Type.Literal('PUT')]), { default: ['POST'], description: 'Methods of the login request.' }),
            bodyType: Type.Union([Type.Literal('form'), Type.Literal('json')], { default: 'form', description: 'Body of the login request: form (application/x-www-form-urlencoded) or json.' }),
            usernameField: Type.Union([Type.String({ minLength: 1 }), Type.Array(Type.String({ minLength: 1 }), { minItems: 1, maxItems: 8, uniqueItems: true })], {
              default: 'username',
              description: 'Name of the username field in the login body; a list when the login paths name it differently (username at /login, j_username at /j_security_check): a body must hold exactly one of them.',
            }),
            passwordField: Type.String({ minLength: 1, default: 'password', description: 'Name of the password field: in a query string it is refused as legacy authentication.' }),
            usernameCase: Type.Union([Type.Literal('lower'), Type.Literal('preserve')], {
              default: 'lower',
              description: 'lower: usernames are case-insensitive (Alice and alice are one account); preserve: case matters.',
            }),
            usernamePattern: Type.Optional(
              Type.String({
                description:
                  'Regular expression the whole canonical username must match (e.g. ^[a-z0-9._-]+$): for a portal that accepts several names for one account (an email address as well as a username), the one form the gateway accepts; other logins are refused before the portal sees them.',
              }),
            ),
            // A path on the gateway's origin: `//host` (or `/\host`, which browsers read alike) would send the browser to another site.
            page: Type.String({ pattern: '^/(?![/\\\\])', default: '/login', description: 'Where a signed-out browser is sent (GET) to sign in, a path on the gateway (not //host); a {target} in it becomes the path and query asked for, percent-encoded (/Account/Login?ReturnUrl={target}).' }),
            success: Type.Object(
              {
                status: Type.Array(Type.Integer({ minimum: 100, maximum: 599 }), { minItems: 1, default: [302, 303], description: 'Status codes of a successful login response.' }),
                location: Type.Optional(Type.String({ description: "Regular expression that where the Location of a successful login sends a browser must match: a path and query on the portal (a relative one read from the login's URL), another site's absolute URL." })),
                setCookie: Type.Optional(Type.String({ description: 'Name of a cookie the portal sets on a successful login.' })),
                body: Type.Optional(Type.String({ description: 'Regular expression the body of a successful login must match.' })),
              },
              { default: {}, additionalProperties: false, description: 'How the gateway recognises a successful login: every rule given must hold.' },
            ),
            failure: Type.Optional(
              Type.Object(
                {
                  status: Type.Optional(Type.Array(Type.Integer({ minimum: 100, maximum: 599 }), { minItems: 1, description: 'Status codes of a refused login response.' })),
                  location: Type.Optional(Type.String({ description: 'Regular expression that where the Location of a refused login sends a browser must match (read as for a success).' })),
                  setCookie: Type.Optional(Type.String({ description: 'Name of a cookie the portal sets on a refused login.' })),
                  body: Type.Optional(Type.String({ description: 'Regular expression the body of a refused login must match.' })),
                },
                {
                  additionalProperties: false,
                  description:
                    "How a refused login looks. When given, only such an answer is shown to the browser (the portal's error page); one that is neither a success nor a refusal (perhaps a success the success rules miss) gets a 502 page, and its cookies are dropped.",
                },
              ),
            ),
          },
          { default: {}, additionalProperties: false, description: "The portal's own password login, which the gateway intercepts." },
        ),
        methods: Type.Array(Type.Union(PORTAL_METHODS.map((m) => Type.Literal(m))), {
          default: ['GET', 'HEAD', 'POST'],
          minItems: 1,
          uniqueItems: true,
          description: 'Methods the gateway passes to the portal (GET among them; HEAD goes with GET); any other gets 405 before any rule.',
        }),
        logoutPaths: PathList(['/logout'], "The portal's logout path(s): they end the gateway session too."),
        passwordForms: PathList(
          [],
          "Paths of the portal's other forms that send the login's username and password fields together without signing anyone in (a registration or change-password page); anywhere else such a body is refused as legacy authentication.",
        ),
        browserCookies: Type.Array(Type.String({ minLength: 1 }), {
          default: [],
          description: "Portal cookies that may reach the browser (e.g. a double-submit XSRF cookie read by the portal's JavaScript). All others stay in the gateway.",
        }),
        stripHeaders: Type.Array(Type.String({ pattern: '^[A-Za-z0-9!#$%&\'*+.^`|~-]+$' }), {
          default: [],
          description: 'Further request headers the portal trusts (its own identity or client-address headers) that a client must never send it: removed from every request, besides the built-in list.',
        }),
      },
      { additionalProperties: false, description: 'The portal behind the gateway.' },
    ),
    networks: Type.Record(Type.String({ pattern: '^[A-Za-z][\\w-]*$' }), Type.Array(Type.String(), { minItems: 1 }), {
      default: {},
      description: 'Named lists of addresses and CIDRs, used by rules.',
    }),
    policy: Type.Object(
      {
        default: Type.Union([Type.Literal('deny'), Type.Literal('mfa')], { default: 'deny', description: 'Decision when no rule matches.' }),
        caseSensitivePaths: Type.Boolean({ default: false, description: 'false: /ADMIN matches a rule for /admin (safe for portals that ignore case).' }),
        rules: Type.Array(Rule, { minItems: 1, description: 'Ordered rules: the first that matches decides.' }),
      },
      { additionalProperties: false, description: 'Conditional access: which requests need what.' },
    ),
    legacyAuth: Type.Object(
      {
        endpoints: Type.Array(Type.String({ pattern: '^/' }), {
          default: [],
          description: 'Old password-taking endpoints (API logins, RPC): always refused. Same pattern syntax as rule paths.',
        }),
      },
      { default: {}, additionalProperties: false, description: 'Legacy authentication (HTTP Basic and friends are refused unless a rule allows them).' },
    ),
    devices: Type.Object(
      {
        caFile: Type.Optional(Type.String({ minLength: 1, description: 'PEM bundle of the device CA(s): managed devices hold a certificate it issued.' })),
        crlFile: Type.Optional(Type.String({ minLength: 1, description: 'PEM CRL of the device CA, re-read when it changes.' })),
        header: Type.Optional(
          Type.Object(
            {
              name: Type.String({ minLength: 1, description: 'Header a TLS-terminating proxy sets with the verified client certificate.' }),
              format: Type.Union([Type.Literal('pem'), Type.Literal('fingerprint')], {
                default: 'pem',
                description: 'pem: URL-encoded PEM (nginx $ssl_client_escaped_cert); fingerprint: SHA-256 hex.',
              }),
            },
            { additionalProperties: false, description: 'Only believed from server.trustedProxies; removed from every request.' },
          ),
        ),
        requireRegistration: Type.Boolean({ default: false, description: 'true: a certificate counts only once registered with `devices register`.' }),
      },
      { default: {}, additionalProperties: false, description: 'Managed devices, recognised by client certificate.' },
    ),
    groups: Type.Object(
      {
        file: Type.Optional(Type.String({ minLength: 1, description: 'YAML or JSON mapping of username to groups, re-read when it changes.' })),
        loginHeader: Type.Optional(Type.String({ minLength: 1, description: "A response header of the portal's login answer listing the user's groups (comma-separated)." })),
      },
      { default: {}, additionalProperties: false, description: 'Where group membership for rules comes from. Unknown users have no groups.' },
    ),
    limits: Type.Object(
      {
        password: Type.Object(
          {
            perAccount: Delay(5, 1, 900, 'Wrong passwords per account: a growing wait, never a lockout an attacker could cause.'),
            perAddress: Delay(20, 1, 900, 'Wrong passwords from one client address.'),
            addressRate: Rate(30, 10, 'Password attempts from one client address.'),
            globalRate: Rate(600, 100, 'Password attempts through the gateway as a whole.'),
            refusalDelayMs: Type.Integer({
              minimum: 0,
              maximum: 10_000,
              default: 1000,
              description: 'A login refused for its address (blocked, too fast, too many failures) is answered after this delay (at most the wait itself): a flood from one address slows to the pace of its connections.',
            }),
          },
          { default: {}, additionalProperties: false, description: 'The password step (the login intercept).' },
        ),
        newBrowsers: Rate(
          120,
          60,
          'Browsers new to the gateway, per client address, whose portal cookies it keeps before sign-in (a cookie jar each, kept an hour); beyond it such a page is answered 429.',
        ),
        newBrowsersOverall: Rate(
          3000,
          1000,
          'Browsers new to the gateway across all addresses: bounds the cookie jars in the store whatever the number of addresses a flood comes from (a full store would refuse every new sign-in for up to an hour after it).',
        ),
        secondFactor: Delay(5, 30, 3600, 'Wrong second factors per user and kind (app codes, passkeys), across logins.', 100),
        enrolmentCode: Delay(5, 30, 3600, 'Wrong enrolment codes per user, across logins.', 20),
        recoveryCode: Delay(5, 30, 3600, 'Wrong recovery codes per user, across logins.', 20),
        stuffing: Type.Object(
          {
            distinctAccounts: Type.Integer({ minimum: 2, default: 20, description: 'Distinct usernames tried from one address within the window that get it blocked.' }),
            windowMinutes: Type.Integer({ minimum: 1, default: 10, description: 'The window for the failure ratio; for distinct usernames, the pause between failures after which the count starts again.' }),
            blockMinutes: Type.Integer({ minimum: 1, default: 60, description: 'How long a blocked address stays blocked.' }),
            failureRatio: Type.Number({ minimum: 0.5, maximum: 1, default: 0.9, description: 'Share of failed passwords across the gateway that tightens the global rate.' }),
            minAttempts: Type.Integer({ minimum: 10, default: 200, description: 'Attempts in the window before the ratio counts.' }),
            tightenedPercent: Type.Integer({ minimum: 1, maximum: 100, default: 20, description: 'The global rate, in percent, while tightened.' }),
          },
          { default: {}, additionalProperties: false, description: 'Credential stuffing and password spraying detection.' },
        ),
      },
      { default: {}, additionalProperties: false, description: 'Rate limits and lockouts, shared by every instance through the store.' },
    ),
    session: Type.Object(
      {
        idleTimeoutSeconds: Seconds(900, 'A session with no request for this long ends (enforced server-side).'),
        absoluteTimeoutSeconds: Seconds(43200, 'A session ends this long after sign-in, whatever the activity.'),
      },
      { default: {}, additionalProperties: false, description: 'Gateway sessions, created after the second factor.' },
    ),
    mfa: Type.Object(
      {
        issuer: Type.Optional(Type.String({ minLength: 1, description: 'Issuer shown in authenticator apps (default: portal.name).' })),
        pendingTimeoutSeconds: Type.Integer({ minimum: 30, maximum: 3600, default: 300, description: 'Time allowed between the password and the second factor (30 s to 1 h); the person can ask for as much again, up to pendingMaxSeconds.' }),
        pendingMaxSeconds: Type.Integer({
          minimum: 30,
          maximum: 3600,
          default: 3600,
          description: 'The longest a sign-in in progress can last, from the password, with "I need more time"; at least pendingTimeoutSeconds (no more than a minute above it: no more time is offered).',
        }),
        maxAttemptsPerLogin: Type.Integer({ minimum: 1, maximum: 10, default: 5, description: 'Wrong codes allowed before the password must be entered again.' }),
      },
      { default: {}, additionalProperties: false, description: 'Second factor.' },
    ),
    enrolment: Type.Object(
      {
        proof: Type.Union([Type.Literal('invite'), Type.Literal('webhook'), Type.Literal('first-login')], {
          default: 'invite',
          description:
            'What a user shows, besides the password, to bind a first factor. invite: a one-time code issued ahead; webhook: a code sent through the portal\'s email/SMS; first-login: nothing (trust on first use, set explicitly only).',
        }),
        inviteDays: Type.Integer({ minimum: 1, default: 30, description: 'invite: days an enrolment code stays valid.' }),
        webhook: Type.Optional(
          Type.Object(
            {
              url: Type.String({ pattern: '^https?://', description: 'The vendor endpoint that delivers the code to the user.' }),
              secret: Type.String({ minLength: 32, description: 'HMAC-SHA-256 key signing each call (X-MFA-Signature).' }),
              codeMinutes: Type.Integer({ minimum: 2, default: 10, description: 'Minutes a delivered code stays valid (at least 2: an email or text message may take a minute to arrive).' }),
            },
            { additionalProperties: false, description: 'webhook: where enrolment codes are sent.' },
          ),
        ),
      },
      { default: {}, additionalProperties: false, description: 'Binding the first second factor.' },
    ),
    webauthn: Type.Object(
      {
        rpId: Type.Optional(Type.String({ pattern: '^[a-z0-9.-]+$', description: 'Relying party id: the registrable host name (default: the first of server.hosts).' })),
        rpName: Type.Optional(Type.String({ minLength: 1, description: 'Name shown by the browser (default: portal.name).' })),
        origins: Type.Optional(
          Type.Array(Type.String({ pattern: '^https?://[^/]+$' }), { minItems: 1, description: 'Exact origins allowed in ceremonies (default: the names of server.hosts that are the rpId or under it, else the rpId, as https://<name>, and https://<name>:<server.port> with server.tls on another port than 443; on a loopback name served over plain http, http://<name>:<server.port> instead).' }),
        ),
        userVerification: Type.Union([Type.Literal('preferred'), Type.Literal('required')], {
          default: 'preferred',
          description: 'required: the authenticator must verify the user (PIN, biometrics).',
        }),
        attestation: Type.Union([Type.Literal('none'), Type.Literal('direct')], { default: 'none', description: 'Attestation asked for at registration.' }),
      },
      { default: {}, additionalProperties: false, description: 'Passkeys and security keys.' },
    ),
    notify: Type.Object(
      {
        url: Type.Optional(Type.String({ pattern: '^https?://', description: 'Receives a signed POST for each factor change, recovery code use and failed second step.' })),
        secret: Type.Optional(Type.String({ minLength: 32, description: 'HMAC-SHA-256 key signing each call (X-MFA-Signature).' })),
        retries: Type.Integer({ minimum: 0, maximum: 10, default: 3, description: 'Further attempts after a failed delivery (no answer, 408, 429 or 5xx; not a 3xx or another 4xx), 1 s, 2 s, 4 s … apart.' }),
        // The person who asked for an enrolment code waits on this one, and a proxy in front gives up at a minute or so.
        timeoutSeconds: TimerSeconds(5, 'How long one delivery may take (at most 30 s: a person asking for an enrolment code waits for it).', 30),
      },
      { default: {}, additionalProperties: false, description: 'Notifications to the portal vendor ("was this you?").' },
    ),
    ui: Type.Object(
      {
        logoFile: Type.Optional(Type.String({ minLength: 1, description: 'PNG, SVG, JPEG or WebP logo shown on the gateway pages.' })),
        accentColour: Type.String({
          pattern: '^#[0-9a-fA-F]{6}$',
          default: '#0b5cad',
          description: 'Colour of the header, buttons and links; needs 4.5:1 contrast with white.',
        }),
        defaultLanguage: Type.String({ pattern: '^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$', default: 'en', description: 'Language when the browser asks for none we have (a language tag, such as mi or pt-BR).' }),
        localesDir: Type.Optional(Type.String({ minLength: 1, description: 'Folder of <language>.json message files (translations of the built-in English), relative to the config file.' })),
      },
      { default: {}, additionalProperties: false, description: "The gateway's own pages." },
    ),
    identity: Type.Object(
      {
        userHeader: Type.Optional(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9-]*$', description: 'Header carrying the signed-in username to the portal.' })),
        groupsHeader: Type.Optional(Type.String({ pattern: '^[A-Za-z][A-Za-z0-9-]*$', description: "Header carrying the user's groups (comma-separated) to the portal." })),
        assertion: Type.Optional(
          Type.Object(
            {
              header: Type.String({ pattern: '^[A-Za-z][A-Za-z0-9-]*$', default: 'X-MFA-Assertion', description: 'Header carrying the signed assertion (a JWT).' }),
              signingKey: Type.String({ minLength: 32, description: 'EC P-256 private key (PKCS#8 PEM) signing assertions (ES256); give it as signingKey_FILE.' }),
              keyId: Type.String({ pattern: '^[A-Za-z0-9._-]{1,32}$', default: 'assertion-1', description: 'kid of the key, published at the JWKS endpoint.' }),
              audience: Type.Optional(Type.String({ minLength: 1, description: "aud of the assertion (default: portal.url's origin)." })),
              lifetimeSeconds: Type.Integer({ minimum: 10, maximum: 3600, default: 120, description: 'How long an assertion is valid; one is reused for a session until half of this is left.' }),
              publishedKeys: Type.Array(
                Type.Object(
                  {
                    keyId: Type.String({ pattern: '^[A-Za-z0-9._-]{1,32}$', description: 'kid of the key.' }),
                    publicKey: Type.String({ minLength: 32, description: 'EC P-256 public key (SPKI PEM; a private key gives its public one); give it as publicKey_FILE.' }),
                  },
                  { additionalProperties: false },
                ),
                { default: [], description: 'Keys published at the JWKS endpoint that sign nothing: the next key before it signs, the one before until what it signed has expired (see Key rotation).' },
              ),
            },
            { additionalProperties: false, description: 'A short-lived JWT (sub, groups, amr, auth_time) the portal can verify with the JWKS at <prefix>/jwks.json.' },
          ),
        ),
      },
      { default: {}, additionalProperties: false, description: 'Telling the portal who is asking (client-sent copies are always removed).' },
    ),
    forwardAuth: Type.Object(
      {
        enabled: Type.Boolean({ default: false, description: 'Answer <prefix>/forward-auth for nginx auth_request, Caddy forward_auth and Traefik forwardAuth.' }),
        sessionCookies: Type.Array(Type.String({ pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$" }), {
          default: [],
          maxItems: 10,
          description: "The portal's session cookies (JSESSIONID, PHPSESSID, .ASPXAUTH): each gateway session lets through only the values it was signed in with.",
        }),
      },
      { default: {}, additionalProperties: false, description: 'Forward-auth mode: a proxy in front asks the gateway about each request.' },
    ),
    audit: Type.Object(
      {
        enabled: Type.Boolean({ default: true, description: 'Write the hash-chained audit trail (needs signingKey).' }),
        dir: Type.String({ minLength: 1, default: 'audit', description: 'Directory of audit.jsonl and its rotated files (one gateway instance per directory).' }),
        maxFileBytes: Type.Integer({ minimum: 4096, maximum: 268435456, default: 10485760, description: 'Rotate before the current file would grow past this (at most 256 MiB: audit verify and the report read each file whole).' }),
        checkpointEvery: Type.Integer({ minimum: 1, default: 1000, description: 'At most this many records between signed checkpoints.' }),
        checkpointIntervalSeconds: TimerSeconds(60, 'Unsealed records get a signed checkpoint once the oldest is this old.'),
        signingKey: Type.Optional(Type.String({ minLength: 32, description: 'Ed25519 private key (PKCS#8 PEM or a base64 32-byte seed) signing checkpoints; give it as signingKey_FILE.' })),
        keyId: Type.String({ pattern: '^[A-Za-z0-9._-]{1,32}$', default: 'audit-1', description: 'kid written into each checkpoint.' }),
        requests: Type.Boolean({ default: false, description: 'Also audit every request to the portal (who, device, method, path, rule, status, latency).' }),
        redisStream: Type.Object(
          {
            enabled: Type.Boolean({ default: false, description: "Copy every record to a Redis stream (the store's Redis) for shipping." }),
            key: Type.String({ minLength: 1, default: 'audit', description: 'Stream key (after store.redis.keyPrefix).' }),
            maxLen: Type.Integer({ minimum: 1000, default: 100000, description: 'Approximate number of records the stream keeps.' }),
          },
          { default: {}, additionalProperties: false },
        ),
      },
      { default: {}, additionalProperties: false, description: 'The tamper-evident audit trail.' },
    ),
    admin: Type.Object(
      {
        host: Type.String({ default: '127.0.0.1', minLength: 1, description: 'Address of the admin listener (metrics, health).' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 9090, description: 'Port of the admin listener: /metrics, /health/live, /health/ready (0: any free port).' }),
        enabled: Type.Boolean({ default: true, description: 'Run the admin listener.' }),
        report: Type.Object(
          {
            groups: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'Groups whose signed-in members may open <prefix>/admin/report (none: the page is off).' }),
            networks: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'And only from these networks (names from `networks`, or addresses/CIDRs); none: any.' }),
          },
          { default: {}, additionalProperties: false, description: 'The read-only assurance report page on the gateway itself, behind this rule.' },
        ),
      },
      { default: {}, additionalProperties: false, description: 'Metrics and health for operators, on a port of their own.' },
    ),
    keys: Type.Object(
      {
        signing: KeyList('Session signing keys (HS256). The first signs; all verify.', '^[A-Za-z0-9._-]{1,32}$'),
        // No "." in these ids: it separates the parts of a sealed record (kid.iv.ciphertext.tag).
        encryption: KeyList('Encryption keys for records at rest (AES-256-GCM). The first encrypts; all decrypt.', '^[A-Za-z0-9_-]{1,32}$'),
        pseudonym: Type.String({ minLength: 43, description: 'Key that turns usernames into pseudonymous ids (HMAC-SHA-256).' }),
      },
      { additionalProperties: false, description: 'Secrets. Use ${ENV_VAR} or a *_FILE key to keep them out of the file.' },
    ),
    store: Type.Object(
      {
        type: Type.Union([Type.Literal('memory'), Type.Literal('redis')], { default: 'memory', description: 'memory: one instance only; redis: shared by any number of instances.' }),
        memory: Type.Object(
          {
            maxEntries: Type.Integer({
              minimum: 1000,
              default: 1_000_000,
              description: 'memory: keys held at most (about 200 to 400 bytes each); beyond, a new key is refused and its request fails closed (503).',
            }),
          },
          { default: {}, additionalProperties: false },
        ),
        redis: Type.Object(
          {
            mode: Type.Union([Type.Literal('single'), Type.Literal('sentinel'), Type.Literal('cluster')], { default: 'single', description: 'How Redis is deployed.' }),
            url: Type.String({ pattern: '^rediss?://', default: 'redis://127.0.0.1:6379', description: 'single: server URL (rediss:// for TLS; user:password@ allowed).' }),
            sentinels: Type.Array(HostPort, { default: [], description: 'sentinel: sentinel addresses.' }),
            masterName: Type.Optional(Type.String({ minLength: 1, description: 'sentinel: name of the monitored master.' })),
            nodes: Type.Array(HostPort, { default: [], description: 'cluster: seed nodes; the rest is discovered.' }),
            username: Type.Optional(Type.String({ minLength: 1, description: 'Redis ACL user (sentinel, cluster, or single when not in the URL).' })),
            password: Type.Optional(Type.String({ minLength: 1, description: 'Redis password (give it as password_FILE).' })),
            sentinelUsername: Type.Optional(Type.String({ minLength: 1, description: 'sentinel: ACL user of the sentinels themselves (Redis 6.2 or later), with sentinelPassword.' })),
            sentinelPassword: Type.Optional(Type.String({ minLength: 1, description: 'Password of the sentinels themselves.' })),
            tls: Type.Optional(
              Type.Object(
                {
                  ca: Type.Optional(Type.String({ minLength: 1, description: 'CA bundle (PEM) to verify Redis; give it as ca_FILE.' })),
                  servername: Type.Optional(Type.String({ minLength: 1, description: 'Name to verify in the certificate (nodes are reached by IP in cluster/sentinel).' })),
                  rejectUnauthorized: Type.Boolean({ default: true, description: 'Verify the server certificate.' }),
                },
                { additionalProperties: false, description: 'TLS to Redis and the sentinels (present means on).' },
              ),
            ),
            keyPrefix: Type.String({ pattern: '^[^{}]*$', default: 'mfa:', description: 'Prefix of every key the gateway writes (no braces).' }),
            commandTimeoutMs: Type.Integer({ minimum: 50, default: 1000, description: 'A Redis call slower than this counts as a failure (fail closed).' }),
            replicaAcks: Type.Integer({
              minimum: 0,
              maximum: 5,
              default: 0,
              description: 'single, sentinel: a write counts only once this many replicas hold it (WAIT); 1 with Sentinel closes the window in which a failover loses writes only the old master had.',
            }),
          },
          { default: {}, additionalProperties: false },
        ),
      },
      { default: {}, additionalProperties: false, description: 'Where factors, sessions and counters live.' },
    ),
    log: Type.Object(
      {
        level: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), { default: 'info', description: 'Log level.' }),
      },
      { default: {}, additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

export type Config = Static<typeof ConfigSchema>;
