// The registry of managed-device certificates, by SHA-256 fingerprint.
import type { Sealer } from '../mechanisms/sealer.js';
import type { KvStore } from './kv-store.js';
import { keys } from './keys.js';
import { SealedRecords } from './sealed-records.js';

export interface DeviceRecord {
  fingerprint: string;
  name: string;
  /** The user the device belongs to (pseudonymous id), when it is bound to one. */
  pid?: string;
  /** The user it was bound to was erased (the binding went with the user): registered again, it needs a user or to be shared. */
  wasBound?: true;
  status: 'active' | 'revoked';
  addedAt: number;
  revokedAt?: number;
}

/** Registered device certificates (by SHA-256 fingerprint): read on every request a rule about devices sees. */
export class DeviceRegistry {
  private readonly records: SealedRecords<DeviceRecord>;
  private readonly index: SealedRecords<string[]>;
  constructor(kv: KvStore, sealer: Sealer) {
    this.records = new SealedRecords(kv, sealer, { cacheSize: 1000, unreadable: 'fail' });
    this.index = new SealedRecords(kv, sealer, { unreadable: 'fail' });
  }
  get(fingerprint: string): Promise<DeviceRecord | null> {
    return this.records.get(keys.device(fingerprint));
  }
  /**
   * Adds or replaces a device (operators only: the index is not updated atomically with the record). The index is
   * compared and set: of devices added at once (two commands run together), none drops out of it.
   */
  async put(d: DeviceRecord): Promise<void> {
    await this.records.put(keys.device(d.fingerprint), d);
    await this.index.change(keys.deviceIndex(), (list) => (list?.includes(d.fingerprint) ? list : [...(list ?? []), d.fingerprint]));
  }
  async list(): Promise<DeviceRecord[]> {
    const list = (await this.index.get(keys.deviceIndex())) ?? [];
    const all = await Promise.all(list.map((fp) => this.get(fp)));
    return all.filter((d): d is DeviceRecord => d !== null);
  }
}
