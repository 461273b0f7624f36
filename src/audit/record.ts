// The audit record format: one canonical JSON line per record, each chained to the line before it.
//
// A record is one line of canonical JSON (keys sorted, no spaces: RFC 8785, which for these flat values is
// JSON.stringify with sorted keys), ended by "\n". Fields of every record:
//   seq   1, 2, 3… over the whole chain, continuing across file rotation and restarts
//   time  ISO-8601 UTC time at which it was written (from the injected clock)
//   type  "event" | "checkpoint" | "resumed"
//   prev  hex SHA-256 of the previous record's line (its exact bytes, without "\n"); 64 zeros for seq 1
//   hash  hex SHA-256 of the canonical JSON of this record without `hash`
// Per type:
//   event       event   a flat object of strings, finite numbers, booleans and nulls; users appear only
//                       by pseudonymous id (`pid`), never by name
//   checkpoint  upTo    seq of the record just before it
//               head    `hash` of that record
//               kid     id of the signing key
//               sig     base64url Ed25519 signature of the canonical JSON of the checkpoint without `hash` and `sig`
//   resumed     reason  "truncated" (the file ended in a partial line), "corrupt" (complete lines that failed
//                       their own hash check), "unsealed" (no damage, but records no checkpoint signs) when the
//                       writer started again, "missing" (records this writer wrote are gone: its current file
//                       was renamed or deleted while it ran), or "lost" (records this writer could not write: a
//                       full disk)
//               skipped how many damaged lines just before it the chain does not continue from: its `prev` is
//                       the line of the last intact record and its `seq` that record's seq + 1
//               unsealed (left out when 0; absent in older trails) how many records just before it, seqs
//                       seq-unsealed..seq-1, no valid checkpoint signed when the writer resumed: it stopped before
//                       sealing them (a crash), or they were appended by someone without the key. The checkpoints
//                       after it sign this statement, which does not vouch for those records.
//               missing (left out when 0) how many records this writer had written after the intact record it
//                       continues from that the trail no longer holds: `audit verify` reports them.
//               lost    (left out when 0) how many records this writer could not write at all since `seq - 1` (its
//                       writes failed: a full disk, a failing volume), so the trail never held them: `audit verify`
//                       reports them.
import { createHash } from 'node:crypto';
import { quoted } from '../quoted.js';

export type AuditValue = string | number | boolean | null;
/** A field set to undefined is left out, as JSON.stringify does. */
export type AuditEvent = Readonly<Record<string, AuditValue | undefined>>;

interface RecordBase {
  seq: number;
  time: string;
  prev: string;
  hash: string;
}
export interface EventRecord extends RecordBase {
  type: 'event';
  event: AuditEvent;
}
export interface CheckpointRecord extends RecordBase {
  type: 'checkpoint';
  upTo: number;
  head: string;
  kid: string;
  sig: string;
}
export interface ResumedRecord extends RecordBase {
  type: 'resumed';
  reason: 'truncated' | 'corrupt' | 'unsealed' | 'missing' | 'lost';
  skipped: number;
  /** Left out when 0, and absent in older trails. */
  unsealed?: number;
  /** Records this writer had written after `seq - 1` that the trail no longer holds; left out when 0. */
  missing?: number;
  /** Records this writer could not write (failed writes) since `seq - 1`; left out when 0. */
  lost?: number;
}
export type AuditRecord = EventRecord | CheckpointRecord | ResumedRecord;

type WithoutHash<T> = T extends unknown ? Omit<T, 'hash'> : never;
/** A record before its hash is computed. */
export type RecordBody = WithoutHash<AuditRecord>;

/** The `prev` of the first record. */
export const GENESIS = '0'.repeat(64);

/** RFC 8785 canonical JSON for the values records hold (objects, strings, finite numbers, booleans, null). */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** Adds the hash; returns the record and its line (without "\n"). */
export function encodeRecord(body: RecordBody): { record: AuditRecord; line: string } {
  const record = { ...body, hash: sha256Hex(canonicalJson(body)) } as AuditRecord;
  return { record, line: canonicalJson(record) };
}

/** Why a value is not a flat event (null when it is one). */
export function flatEventError(event: unknown): string | null {
  if (event === null || typeof event !== 'object' || Array.isArray(event)) return 'event is not an object';
  for (const [key, v] of Object.entries(event)) {
    const flat = v === null || v === undefined || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
    if (!flat) return `event field ${quoted(key)} is not a string, finite number, boolean or null`;
  }
  return null;
}

const HEX64 = /^[0-9a-f]{64}$/;
const ISO_TIME = /^[+-]?\d{4,6}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const FIELDS = {
  event: ['event'],
  checkpoint: ['upTo', 'head', 'kid', 'sig'],
  resumed: ['reason', 'skipped', 'unsealed', 'missing', 'lost'],
} as const;

function shapeError(r: Record<string, unknown>): string | null {
  const type = r.type as keyof typeof FIELDS;
  if (!Object.hasOwn(FIELDS, type)) return 'unknown record type';
  const allowed = new Set<string>(['seq', 'time', 'type', 'prev', 'hash', ...FIELDS[type]]);
  const extra = Object.keys(r).find((k) => !allowed.has(k));
  // Names read from the trail: quoted, so a forged line writes no escape sequence to the terminal.
  if (extra !== undefined) return `unexpected field ${quoted(extra)}`;
  if (!Number.isSafeInteger(r.seq) || (r.seq as number) < 1) return 'seq is not a positive integer';
  // As the writer writes it (toISOString): checked, as the time of records no signature covers yet is printed.
  if (typeof r.time !== 'string' || !ISO_TIME.test(r.time)) return 'time is not an ISO-8601 UTC time';
  if (typeof r.prev !== 'string' || !HEX64.test(r.prev)) return 'prev is not a SHA-256';
  if (typeof r.hash !== 'string' || !HEX64.test(r.hash)) return 'hash is not a SHA-256';
  switch (type) {
    case 'event':
      return flatEventError(r.event);
    case 'checkpoint':
      if (!Number.isSafeInteger(r.upTo) || (r.upTo as number) < 0) return 'upTo is not a seq';
      if (typeof r.head !== 'string' || !HEX64.test(r.head)) return 'head is not a SHA-256';
      return typeof r.kid === 'string' && typeof r.sig === 'string' ? null : 'kid or sig is not a string';
    case 'resumed':
      if (r.reason !== 'truncated' && r.reason !== 'corrupt' && r.reason !== 'unsealed' && r.reason !== 'missing' && r.reason !== 'lost') return 'unknown resume reason';
      if (r.unsealed !== undefined && !(Number.isSafeInteger(r.unsealed) && (r.unsealed as number) >= 0)) return 'unsealed is not a count';
      if (r.missing !== undefined && !(Number.isSafeInteger(r.missing) && (r.missing as number) > 0)) return 'missing is not a count';
      if (r.lost !== undefined && !(Number.isSafeInteger(r.lost) && (r.lost as number) > 0)) return 'lost is not a count';
      return Number.isSafeInteger(r.skipped) && (r.skipped as number) >= 0 ? null : 'skipped is not a count';
  }
}

/**
 * Reads one line. `intact`: the line is exactly the canonical form of the record and its hash matches, so any
 * byte changed without recomputing the hash shows here; a recomputed hash shows in the next record's `prev`.
 */
export function decodeRecord(line: string): { record: AuditRecord; intact: boolean } | { error: string } {
  const parsed = parseRecord(line);
  if (!('record' in parsed)) return parsed;
  const { record } = parsed;
  const { hash, ...body } = record;
  return { record, intact: canonicalJson(record) === line && sha256Hex(canonicalJson(body)) === hash };
}

/** Reads one line as a record of the right shape, without checking its bytes or its hash (decodeRecord does). */
export function parseRecord(line: string): { record: AuditRecord } | { error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    return { error: 'not JSON' };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return { error: 'not a JSON object' };
  const error = shapeError(parsed as Record<string, unknown>);
  return error ? { error } : { record: parsed as AuditRecord };
}
