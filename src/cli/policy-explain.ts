// `mfa-gateway policy explain`: which rule decides a request, and why each rule before it did not.
import type { Config } from '../config/schema.js';
import { policyConfig } from '../config/load.js';
import { normaliseAddress } from '../domain/client-address.js';
import { carriesLegacyCredentials, loginFields } from '../domain/legacy-auth.js';
import { carriesMethodOverride, compilePolicy, explainAccess, type AccessOutcome, type RuleFactor } from '../domain/policy.js';
import { accountNames } from '../domain/username.js';
import { UNRESOLVED, sameSegments, targetOrRefusal } from '../domain/canonical-path.js';
import { inPrefix, loginPageMatcher, loose, passedMethods, portalPaths } from '../domain/portal-paths.js';
import { parseHost } from '../http/edge.js';
import { parseGroupMap } from '../services/groups.js';
import { UsageError } from './usage.js';
import { readFileSync } from 'node:fs';

export interface ExplainQuery {
  path: string;
  ip?: string;
  user?: string;
  groups?: string[];
  method?: string;
  host?: string;
  managed?: boolean;
  /** The session's last second factor; `webauthn` is then a synced passkey. */
  factor?: RuleFactor;
  factorAgeSeconds?: number;
  authorization?: string;
}

/** Whether `rule` decided for want of a client address (no --ip given). */
const undecided = (o: AccessOutcome, rule: string): boolean => o.verdict === 'deny' && o.reason === 'unknown-address' && o.rule === rule;

/** The explanation as text lines (the command prints them). */
export function explainPolicy(config: Config, q: ExplainQuery): string[] {
  const target = targetOrRefusal(q.path, { pathParameters: config.server.pathParameters === 'allow' });
  if (typeof target === 'string') return [`${q.path}: refused before any rule (400 GW_ERR_BAD_PATH): ${target}`];
  // The proxy in front sends the portal the URI as written: forward-auth judges only one with nothing to resolve.
  if (config.forwardAuth.enabled && !sameSegments(q.path)) return [`${q.path}: refused before any rule (400 GW_ERR_BAD_PATH): ${UNRESOLVED}`];
  const host = parseHost(q.host ?? config.server.hosts[0]);
  if (!host) return [`host ${JSON.stringify(q.host)}: refused before any rule (421): not a host name`];
  if (!config.server.hosts.some((h) => h.toLowerCase() === host)) return [`host ${host}: refused before any rule (421): not one of server.hosts`];
  const method = (q.method ?? 'GET').toUpperCase();
  // Only the methods the gateway passes to the portal, in forward-auth mode too (the endpoint refuses the others).
  if (!passedMethods(config.portal.methods).includes(method)) return [`method ${method}: refused before any rule (405): not one of portal.methods`];
  const lowered = loose(target.matchPath);
  const prefix = config.server.prefix.toLowerCase();
  if (inPrefix(lowered, prefix)) {
    return [`${target.matchPath}: one of the gateway's own routes (server.prefix), never the portal's: not decided by these rules`];
  }
  const paths = portalPaths(config.portal.login, config.portal.logoutPaths);
  const login = paths.loginPathOf(lowered, method);
  // In forward-auth mode the login (other than its page) and the logout belong to the gateway, in every spelling: the
  // proxy must send them there, and forward-auth refuses them.
  if (config.forwardAuth.enabled && (login !== undefined || paths.isLogout(lowered))) {
    return [`${method} ${target.matchPath}: refused before any rule (403): the portal's ${login === undefined ? 'logout' : 'login'}, which the proxy in front must send to the gateway, not ask forward-auth about`];
  }
  // As the proxy does: a login in another spelling, or below a login script, is judged as the configured login path.
  const path = login ?? target.matchPath;
  const ip = q.ip === undefined ? null : normaliseAddress(q.ip);
  const user = q.user === undefined ? null : accountNames(config.portal.login)(q.user);
  // A name no sign-in can use would otherwise be explained as nobody signed in, as if --user were left out.
  if (q.user !== undefined && user === null) throw new UsageError(`--user: not a usable username (no sign-in can use it): ${JSON.stringify(q.user)}`);
  const fileGroups = user && config.groups.file ? parseGroupMap(readFileSync(config.groups.file, 'utf8'), config.portal.login.usernameCase).get(user) ?? [] : [];
  const groups = [...new Set([...fileGroups, ...(q.groups ?? [])])];
  const { outcome, trace } = explainAccess(compilePolicy(policyConfig(config)), {
    host,
    method,
    path,
    clientIp: ip,
    legacyAuth: carriesLegacyCredentials(q.authorization, target.query, loginFields(config.portal.login)),
    methodOverride: carriesMethodOverride(target.query),
    session: user
      ? {
          groups,
          factorAgeSeconds: q.factorAgeSeconds ?? 0,
          factor: q.factor === 'device-bound-passkey' ? 'webauthn' : q.factor ?? 'totp',
          deviceBound: q.factor === 'device-bound-passkey',
        }
      : null,
    device: { managed: q.managed ?? false },
  });
  const who = user ? `${user} (groups: ${groups.join(', ') || 'none'}; ${q.factor ?? 'totp'} ${q.factorAgeSeconds ?? 0} s ago)` : 'nobody signed in';
  return [
    `request: ${method} ${path}${path === target.matchPath ? '' : ` (the login, sent as ${target.matchPath})`} from ${ip ?? 'an unknown address'}, ${who}, ${q.managed ? 'managed' : 'unmanaged'} device`,
    // Without --ip, the rule that tests the network decides for want of an address, as the decision line says.
    ...trace.map((l) => `  ${l.result === 'no match' ? '-' : '>'} ${l.rule}: ${undecided(outcome, l.rule) ? 'unknown without --ip (the rule tests the network: give --ip to judge it)' : `${l.result} (${l.why})`}`),
    `decision: ${describe(outcome, loginPageMatcher(config.portal.login.page)(target.matchPath, method))}`,
  ];
}

/** Why a request is denied, in the words of the options and headers behind it (an unknown address: see describe). */
const DENIALS: Record<Exclude<Extract<AccessOutcome, { verdict: 'deny' }>['reason'], 'unknown-address'>, string> = {
  rule: "the rule's decision is deny",
  'legacy-auth': 'legacy authentication, an Authorization header (Basic, Digest, NTLM, Negotiate) or the login fields in the query',
  'legacy-endpoint': 'a legacyAuth.endpoints path',
  'method-override': 'the query asks the portal for another method',
};

/** `loginPage`: the request is for the login page, which the gateway refuses rather than send it round to itself. */
function describe(o: AccessOutcome, loginPage: boolean): string {
  switch (o.verdict) {
    case 'allow':
      return `allowed by "${o.rule}" (${o.decision})`;
    case 'deny':
      // The address is unknown here only for want of --ip (main refuses one it cannot read); the gateway always has
      // one, but for an address a trusted proxy passed that it cannot read, which it denies.
      if (o.reason === 'unknown-address') {
        return `unknown without --ip: "${o.rule}" tests the network; give --ip A to judge network rules (a client address the gateway cannot read is denied: 403 GW_ERR_ACCESS_DENIED)`;
      }
      return `denied by "${o.rule}": ${DENIALS[o.reason]} (403 ${o.reason.startsWith('legacy') ? 'GW_ERR_LEGACY_AUTH' : 'GW_ERR_ACCESS_DENIED'})`;
    case 'sign-in':
      return loginPage
        ? `sign-in required by "${o.rule}", on the login page itself: refused to a signed-out browser opening it (403 GW_ERR_ACCESS_DENIED); add its path to a public rule`
        : `sign-in required by "${o.rule}"`;
    case 'managed-device':
      return `"${o.rule}" needs a managed device`;
    case 'step-up':
      return `"${o.rule}" needs a second factor${o.factors.length ? ` (${o.factors.join(' or ')})` : ''} in the last ${o.maxAgeSeconds} s`;
  }
}
