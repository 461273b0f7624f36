// Checkpoint signatures: Ed25519 over the checkpoint's canonical JSON without `hash` and `sig`.
import { sign, verify, type KeyObject } from 'node:crypto';
import { canonicalJson, type CheckpointRecord } from './record.js';

export type CheckpointClaims = Omit<CheckpointRecord, 'hash' | 'sig'>;

const SIGNATURE = /^[A-Za-z0-9_-]{86}$/;

export function signCheckpoint(claims: CheckpointClaims, privateKey: KeyObject): Omit<CheckpointRecord, 'hash'> {
  return { ...claims, sig: sign(null, Buffer.from(canonicalJson(claims)), privateKey).toString('base64url') };
}

export function checkpointSignatureValid(record: CheckpointRecord, publicKey: KeyObject): boolean {
  const { hash: _hash, sig, ...claims } = record;
  if (!SIGNATURE.test(sig)) return false;
  try {
    return verify(null, Buffer.from(canonicalJson(claims)), publicKey, Buffer.from(sig, 'base64url'));
  } catch {
    return false;
  }
}
