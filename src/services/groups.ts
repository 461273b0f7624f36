// Group membership for rules: a mapping file (re-read when it changes) and/or groups the portal named at login.
import { isMap, isNode, isScalar, parseDocument } from 'yaml';
import type { Clock } from '../clock.js';
import { canonicalUsername, type UsernameCase } from '../domain/username.js';
import { WatchedFile } from '../mechanisms/watched-file.js';

export type GroupMap = ReadonlyMap<string, readonly string[]>;

const NONE: readonly string[] = [];

export class GroupDirectory {
  /**
   * `fromLogin`: whether groups.loginHeader is set. Groups a session took from the login answer count only then: a
   * header found spoofable and taken out of the config stops counting at once, also for sessions begun before (on
   * this instance, or on another that still has it during a rollout).
   */
  constructor(
    private readonly file: WatchedFile<GroupMap> | null,
    private readonly fromLogin: boolean,
  ) {}

  /** The user's groups: from the mapping file and from the portal's login answer. Unknown users have none. */
  groupsOf(username: string, fromLogin: readonly string[] | undefined): readonly string[] {
    const mapped = this.file?.current().get(username) ?? NONE;
    if (!this.fromLogin || !fromLogin?.length) return mapped;
    return mapped.length ? [...new Set([...mapped, ...fromLogin])] : fromLogin;
  }
}

/** Opens the mapping file: `username: [group, …]`, usernames written as people type them (canonicalised here). */
export function groupFile(path: string, usernameCase: UsernameCase, clock: Clock, onError: (err: Error) => void): WatchedFile<GroupMap> {
  return new WatchedFile(path, (text) => parseGroupMap(text, usernameCase), clock, onError);
}

export function parseGroupMap(text: string, usernameCase: UsernameCase): GroupMap {
  // Keys are told apart below, as written: YAML's own check takes `7` and `007` (one number) for one key.
  const doc = parseDocument(text, { uniqueKeys: false });
  if (doc.errors.length) throw doc.errors[0];
  const raw: unknown = doc.toJS({ mapAsMap: true });
  // Empty (or comments only): most likely a file caught while being written (`cat > groups.yaml` empties it first),
  // which would take everyone's groups away; a file that maps nobody says so with `{}`.
  if (raw === null || raw === undefined) throw new Error('group file: empty (write {} for a file that maps nobody)');
  if (!isMap(doc.contents)) throw new Error('group file: expected a mapping of username to a list of groups');
  const map = new Map<string, readonly string[]>();
  for (const pair of doc.contents.items) {
    // The username as written: YAML reads `007` as the number 7 (and `0x1A` as 26, `1e3` as 1000), which is the name
    // of another person, who would be given these groups.
    const user = isScalar(pair.key) ? (pair.key.type === 'PLAIN' ? pair.key.source ?? '' : String(pair.key.value)) : null;
    const groups: unknown = isNode(pair.value) ? pair.value.toJS(doc) : pair.value;
    const name = user === null ? null : canonicalUsername(user, usernameCase);
    if (name === null || !Array.isArray(groups) || !groups.every(isGroupName)) {
      throw new Error(`group file: entry ${JSON.stringify(user ?? String(pair.key)).slice(0, 60)} must be a username with a list of group names`);
    }
    // Two spellings of one person (`alice`, `Alice`): the later would silently replace the groups of the earlier.
    if (map.has(name)) throw new Error(`group file: entry ${JSON.stringify(user).slice(0, 60)} names the same user as an earlier one`);
    map.set(name, Object.freeze([...groups]));
  }
  return map;
}

/** A group name: text a header or an assertion can carry (no control or format characters, no lone surrogate). */
function isGroupName(g: unknown): g is string {
  return typeof g === 'string' && g.length > 0 && g.length <= 256 && !/[\p{Cc}\p{Cf}\p{Cs}]/u.test(g);
}

/**
 * A group name a login response header can carry (ASCII: a header's bytes beyond it are no reliable text), spaces
 * only inside it (each name is trimmed).
 */
export const HEADER_GROUP = /^(?! )[\w .:@-]{1,64}(?<! )$/;

/** Groups listed by the portal in a login response header (comma-separated); other names are left out. */
export function groupsFromHeader(value: string | string[] | undefined): string[] {
  const joined = Array.isArray(value) ? value.join(',') : value ?? '';
  return [...new Set(joined.split(',').map((g) => g.trim()).filter((g) => HEADER_GROUP.test(g)))];
}
