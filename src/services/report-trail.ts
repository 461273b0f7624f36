// The report's reading of the audit trails: every line of every file decoded, the chains verified and the events of
// the period counted. A trail of months takes seconds of CPU, so it runs in a worker thread (this same module) and
// only the counts come back: the gateway goes on serving.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { openAuditDir } from '../audit/file-sink.js';
import { parseRecord, type AuditRecord } from '../audit/record.js';
import { verifyAuditDir, type AuditReport } from '../audit/verify-audit.js';
import { countEvent, emptySummary, type EventSummary, type ReportInput } from '../domain/report.js';

export interface TrailRequest {
  /** One audit directory per chain (the gateway's, the admin CLI's, or one per instance). */
  dirs: readonly string[];
  /** The public key of the checkpoints (PEM); null when the audit trail is disabled. */
  publicKeyPem: string | null;
  /** The period whose events are counted. */
  period: { from: number; to: number };
}

export interface TrailReading {
  /** The audit events of the period, counted: what crosses between threads stays small however many there are. */
  events: EventSummary;
  /** The verdict on every chain; null when the audit trail is disabled. */
  audit: ReportInput['audit'];
}

const TASK = 'mfa-gateway:report-trail';

/** Reads and verifies the trails in a worker thread; rejects if the worker fails. */
export async function readTrailOffThread(request: TrailRequest): Promise<TrailReading> {
  const worker = new Worker(new URL(import.meta.url), { workerData: { task: TASK, request } });
  return new Promise((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the audit trail reader stopped (exit code ${code}) without an answer`)));
  });
}

/** The same, on the calling thread. */
export function readTrail({ dirs, publicKeyPem, period }: TrailRequest): TrailReading {
  // Each chain read as one reading: its events and its verdict come from the same lines.
  const events = emptySummary();
  const count = (r: AuditRecord) => {
    if (r.type === 'event') countEvent(events, r, period);
  };
  if (publicKeyPem !== null) return { events, audit: combine(dirs.map((dir) => ({ dir, report: verifyAuditDir(dir, publicKeyPem, count) }))) };
  for (const dir of dirs) {
    const trail = openAuditDir(dir);
    try {
      for (let f = 0; f < trail.files.length; f++) {
        for (const { line, complete } of trail.lines(f)) {
          const parsed = complete ? parseRecord(line) : undefined;
          if (parsed && 'record' in parsed) count(parsed.record);
        }
      }
    } finally {
      trail.close();
    }
  }
  return { events, audit: null };
}

/** The chains (the gateway's and the admin CLI's, or one per instance) as one verdict; each has its own seqs. */
function combine(chains: { dir: string; report: AuditReport }[]): NonNullable<ReportInput['audit']> {
  return {
    ok: chains.every((c) => c.report.ok),
    records: chains.reduce((n, c) => n + c.report.records, 0),
    checkpoints: chains.reduce((n, c) => n + c.report.checkpoints, 0),
    chains: chains.map((c) => ({ trail: c.dir, lastSealedSeq: c.report.lastSealedSeq })),
    problems: chains.flatMap((c) => c.report.problems),
  };
}

if (!isMainThread && (workerData as { task?: string } | null)?.task === TASK) {
  parentPort!.postMessage(readTrail((workerData as { request: TrailRequest }).request));
}
