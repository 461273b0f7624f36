// Every configuration option: type, default and a one-line description. The Config type is derived from it.
import { Type, type Static } from '@sinclair/typebox';

const Seconds = (def: number, description: string, min = 1) =>
  Type.Integer({ minimum: min, default: def, description });

const KeyList = (description: string) =>
  Type.Array(
    Type.Object(
      {
        id: Type.String({ pattern: '^[A-Za-z0-9._-]{1,32}$', description: 'Key id, written into tokens and records so keys can be rotated.' }),
        secret: Type.String({ minLength: 43, description: 'At least 32 random bytes, base64 or base64url encoded.' }),
      },
      { additionalProperties: false },
    ),
    { minItems: 1, description },
  );

const PathList = (def: string[], description: string) =>
  Type.Array(Type.String({ pattern: '^/' }), { default: def, description });

export const ConfigSchema = Type.Object(
  {
    server: Type.Object(
      {
        host: Type.String({ default: '127.0.0.1', description: 'Address the gateway listens on.' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 8080, description: 'Port the gateway listens on (0 = any free port).' }),
        prefix: Type.String({
          default: '/_mfa',
          pattern: '^/[a-z0-9_-]+$',
          description: "Reserved path prefix of the gateway's own pages; never forwarded to the portal.",
        }),
      },
      { default: {}, additionalProperties: false, description: 'The listening HTTP server.' },
    ),
    portal: Type.Object(
      {
        url: Type.String({ pattern: '^https?://[^/?#]+/?$', description: 'Origin of the portal behind the gateway, e.g. http://portal.internal:8080.' }),
        name: Type.String({ default: 'Patient portal', description: "Portal name shown on the gateway's pages." }),
        timeoutSeconds: Seconds(30, 'How long the gateway waits for the portal before answering 504.'),
        login: Type.Object(
          {
            paths: PathList(['/login'], "The portal's password login path(s), intercepted by the gateway."),
            methods: Type.Array(Type.Union([Type.Literal('POST'), Type.Literal('PUT')]), { default: ['POST'], description: 'Methods of the login request.' }),
            bodyType: Type.Union([Type.Literal('form'), Type.Literal('json')], { default: 'form', description: 'Body of the login request: form (application/x-www-form-urlencoded) or json.' }),
            usernameField: Type.String({ minLength: 1, default: 'username', description: 'Name of the username field in the login body.' }),
            usernameCase: Type.Union([Type.Literal('lower'), Type.Literal('preserve')], {
              default: 'lower',
              description: 'lower: usernames are case-insensitive (Alice and alice are one account); preserve: case matters.',
            }),
            page: Type.String({ pattern: '^/', default: '/login', description: 'Where a signed-out browser is sent (GET) to sign in.' }),
            success: Type.Object(
              {
                status: Type.Array(Type.Integer({ minimum: 100, maximum: 599 }), { minItems: 1, default: [302, 303], description: 'Status codes of a successful login response.' }),
                location: Type.Optional(Type.String({ description: 'Regular expression the Location header of a successful login must match.' })),
                setCookie: Type.Optional(Type.String({ description: 'Name of a cookie the portal sets on a successful login.' })),
                body: Type.Optional(Type.String({ description: 'Regular expression the body of a successful login must match.' })),
              },
              { default: {}, additionalProperties: false, description: 'How the gateway recognises a successful login: every rule given must hold.' },
            ),
          },
          { default: {}, additionalProperties: false, description: "The portal's own password login, which the gateway intercepts." },
        ),
        logoutPaths: PathList(['/logout'], "The portal's logout path(s): they end the gateway session too."),
        publicPaths: PathList(['/login', '/static/'], 'Path prefixes reachable without signing in (the login page and its assets).'),
        browserCookies: Type.Array(Type.String({ minLength: 1 }), {
          default: [],
          description: "Portal cookies that may reach the browser (e.g. a double-submit XSRF cookie read by the portal's JavaScript). All others stay in the gateway.",
        }),
      },
      { additionalProperties: false, description: 'The portal behind the gateway.' },
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
        issuer: Type.String({ minLength: 1, default: 'Patient portal', description: 'Issuer shown in authenticator apps.' }),
        pendingTimeoutSeconds: Seconds(300, 'Time allowed between the password and the second factor.'),
        maxAttemptsPerLogin: Type.Integer({ minimum: 1, maximum: 10, default: 5, description: 'Wrong codes allowed before the password must be entered again.' }),
      },
      { default: {}, additionalProperties: false, description: 'Second factor.' },
    ),
    keys: Type.Object(
      {
        signing: KeyList('Session signing keys (HS256). The first signs; all verify.'),
        encryption: KeyList('Encryption keys for records at rest (AES-256-GCM). The first encrypts; all decrypt.'),
        pseudonym: Type.String({ minLength: 43, description: 'Key that turns usernames into pseudonymous ids (HMAC-SHA-256).' }),
      },
      { additionalProperties: false, description: 'Secrets. Use ${ENV_VAR} or a *_FILE key to keep them out of the file.' },
    ),
    store: Type.Object(
      {
        type: Type.Union([Type.Literal('memory'), Type.Literal('redis')], { default: 'memory', description: 'memory: one instance only; redis: shared by any number of instances.' }),
        redis: Type.Object(
          {
            url: Type.String({ pattern: '^rediss?://', default: 'redis://127.0.0.1:6379', description: 'Redis URL (rediss:// for TLS).' }),
            keyPrefix: Type.String({ default: 'mfa:', description: 'Prefix of every key the gateway writes.' }),
            commandTimeoutMs: Type.Integer({ minimum: 50, default: 1000, description: 'A Redis call slower than this counts as a failure (fail closed).' }),
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
