// A configuration file the gateway keeps reading (group map, CRL): re-read when its modification time, size or inode
// changes.
import { readFileSync, statSync, type Stats } from 'node:fs';
import type { Clock } from '../clock.js';

// How often, at most, the file's modification time is looked at: one stat a second, whatever the traffic.
const CHECK_INTERVAL_MS = 1000;

export class WatchedFile<T> {
  private value: T;
  private version: string;
  private checkedAt: number;

  /** Reads and parses the file now: a file that cannot be read or parsed at start is a configuration error. */
  constructor(
    readonly path: string,
    private readonly parse: (text: string) => T,
    private readonly clock: Clock,
    private readonly onReloadError: (err: Error) => void = () => {},
    private readonly onReload: (value: T) => void = () => {},
  ) {
    this.version = versionOf(path);
    this.value = parse(readFileSync(path, 'utf8'));
    this.checkedAt = clock.now();
  }

  /** The current content. A changed file that cannot be read or parsed keeps the last good content (and reports). */
  current(): T {
    const now = this.clock.now();
    if (now - this.checkedAt < CHECK_INTERVAL_MS) return this.value;
    this.checkedAt = now;
    try {
      const version = versionOf(this.path);
      if (version !== this.version) {
        // Remembered first: a broken or missing file is reported once, and tried again when it changes again.
        this.version = version;
        this.value = this.parse(readFileSync(this.path, 'utf8'));
        this.onReload(this.value);
      }
    } catch (err) {
      this.onReloadError(err as Error);
    }
    return this.value;
  }
}

/**
 * What tells one content of the file from the next. Not the modification time alone: the kernel stamps it at the
 * granularity of its clock tick, so a file read while being written (emptied, then filled) can be complete a moment
 * later with the same time, and would be kept half-read. Its size has grown meanwhile; a file replaced by a rename
 * has another inode.
 */
function versionOf(path: string): string {
  let stats: Stats;
  try {
    stats = statSync(path);
  } catch {
    // Gone (or unreadable): one version of its own, so that reading it fails, and is reported, once.
    return 'missing';
  }
  return `${stats.mtimeMs}/${stats.size}/${stats.ino}`;
}
