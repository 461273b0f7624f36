// Deployment files stay correct without a Docker engine: every YAML parses, configs validate, alerts name real metrics.
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { parse, parseAllDocuments } from 'yaml';
import { configWarnings, resolveConfig } from '../../../src/config/load.js';
import { Metrics } from '../../../src/metrics/metrics.js';
import { SECURITY_EVENTS } from '../../../src/services/security-events.js';
import { merge, randomKey, rawTestConfig } from '../../helpers/config.js';

const AUDIT_DIR = '/var/lib/mfa-gateway/audit';

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return yamlFiles(path);
    return /\.ya?ml$/.test(name) ? [path] : [];
  });
}

/** Every document of a YAML file, failing on any parse error or warning. */
function documents(file: string): any[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  for (const d of docs) if (d.errors.length || d.warnings.length) throw new Error(`${file}: ${[...d.errors, ...d.warnings].map((e) => e.message).join('; ')}`);
  return docs.map((d) => d.toJS());
}

const k8s = (name: string) => documents(join('docker/k8s', name))[0];

async function metricNames(): Promise<Set<string>> {
  const names = (await new Metrics().registry.getMetricsAsJSON()).map((m) => m.name);
  return new Set(names.flatMap((n) => [n, `${n}_bucket`, `${n}_count`, `${n}_sum`]));
}

t.test('every YAML file under docker/ and docs/ parses', async (t) => {
  const files = [...yamlFiles('docker'), ...yamlFiles('docs')];
  t.ok(files.length >= 10, files.join(', '));
  for (const f of files) t.doesNotThrow(() => documents(f), f);
});

t.test('alerting rules: well formed, each names metrics the gateway exports', async (t) => {
  const known = await metricNames();
  const { groups } = parse(readFileSync('docs/alerts/mfa-gateway.rules.yml', 'utf8'));
  const rules = groups.flatMap((g: { rules: unknown[] }) => g.rules) as { alert: string; expr: string; for?: string; labels: { severity: string }; annotations: { summary: string } }[];
  t.ok(rules.length >= 10);
  t.equal(new Set(rules.map((r) => r.alert)).size, rules.length, 'alert names are unique');
  const covered = new Set<string>();
  const events = new Set<string>();
  for (const r of rules) {
    for (const [, e] of r.expr.matchAll(/mfa_gateway_security_events_total\{event="([a-z_]+)"\}/g)) events.add(e!);
    t.match(r.alert, /^MfaGateway[A-Za-z]+$/, r.alert);
    t.ok(['warning', 'critical'].includes(r.labels.severity), `${r.alert}: severity`);
    t.ok(r.annotations.summary.length > 10, `${r.alert}: summary`);
    if (r.for !== undefined) t.match(r.for, /^\d+[smh]$/, `${r.alert}: for`);
    // Selectors are names followed by { or [; functions are followed by (.
    const selectors = [...r.expr.matchAll(/([A-Za-z_:][A-Za-z0-9_:]*)\s*[{[]/g)].map((m) => m[1]!);
    t.ok(selectors.length > 0, `${r.alert}: selects a series`);
    for (const s of selectors) {
      t.ok(known.has(s) || s === 'up', `${r.alert}: ${s} is exported`);
      covered.add(s.replace(/_(bucket|count|sum)$/, ''));
    }
  }
  for (const m of ['mfa_gateway_address_blocks_total', 'mfa_gateway_login_failure_surges_total', 'mfa_gateway_password_checks_total', 'mfa_gateway_factor_lockouts_total', 'mfa_gateway_store_errors_total', 'mfa_gateway_store_call_duration_seconds', 'mfa_gateway_ready', 'mfa_gateway_audit_failures_total', 'mfa_gateway_upstream_errors_total', 'mfa_gateway_notification_failures_total']) {
    t.ok(covered.has(m), `an alert watches ${m}`);
  }
  for (const e of events) t.ok((SECURITY_EVENTS as readonly string[]).includes(e), `${e} is a security event`);
  for (const e of ['webauthn_counter_regression', 'enrolment_code_not_sent']) t.ok(events.has(e), `an alert watches the ${e} events`);
});

t.test("every alert has its row in docs/operations.md's table, with its severity", async (t) => {
  const { groups } = parse(readFileSync('docs/alerts/mfa-gateway.rules.yml', 'utf8'));
  const rules = groups.flatMap((g: { rules: unknown[] }) => g.rules) as { alert: string; labels: { severity: string } }[];
  // A row may name several alerts: one severity for all, or one each (`critical / warning`).
  const rows = new Map<string, string>();
  for (const [, names, severities] of readFileSync('docs/operations.md', 'utf8').matchAll(/^\| (`MfaGateway[^|]+) \| ([a-z /]+) \|/gm)) {
    const alerts = [...names!.matchAll(/`(MfaGateway[A-Za-z]+)`/g)].map((m) => m[1]!);
    const each = severities!.split(' / ');
    alerts.forEach((a, i) => rows.set(a, each.length === alerts.length ? each[i]! : severities!));
  }
  for (const r of rules) t.equal(rows.get(r.alert), r.labels.severity, `${r.alert}: its row and severity`);
  t.same([...rows.keys()].filter((a) => !rules.some((r) => r.alert === a)), [], 'no row for an alert that does not exist');
});

t.test('every metric is documented in docs/operations.md and in the table of src/metrics/metrics.ts', async (t) => {
  const ops = readFileSync('docs/operations.md', 'utf8');
  const source = readFileSync('src/metrics/metrics.ts', 'utf8');
  const ours = (await new Metrics().registry.getMetricsAsJSON()).map((m) => m.name).filter((n) => n.startsWith('mfa_gateway_'));
  for (const name of ours) {
    t.match(ops, `| \`${name}\` |`, `operations.md: ${name}`);
    t.match(source, ` * | ${name} `, `metrics.ts table: ${name}`);
  }
  t.equal((ops.match(/^\| `mfa_gateway_[a-z_]+` \|/gm) ?? []).length, ours.length, 'no documented metric that does not exist');
});

t.test("forward-auth: the README's gateway configuration validates", async (t) => {
  const block = /```yaml\n([\s\S]*?)```/.exec(readFileSync('docs/forward-auth/README.md', 'utf8'))![1]!;
  const config = resolveConfig(merge(rawTestConfig('http://portal.internal:8080'), parse(block)));
  t.match(config.forwardAuth, { enabled: true, sessionCookies: ['JSESSIONID'] });
  t.match(config.identity, { userHeader: 'X-MFA-User', groupsHeader: 'X-MFA-Groups' });
});

t.test('compose: the gateway config validates, with the admin listener and the audit trail', async (t) => {
  const env = { MFA_SIGNING_KEY: randomKey(), MFA_ENCRYPTION_KEY: randomKey(), MFA_PSEUDONYM_KEY: randomKey(), MFA_AUDIT_KEY: randomKey() };
  const config = resolveConfig(parse(readFileSync('docker/gateway.compose.yaml', 'utf8')), { env });
  t.match(config.admin, { host: '0.0.0.0', port: 9090, enabled: true });
  t.match(config.audit, { enabled: true, dir: AUDIT_DIR, signingKey: env.MFA_AUDIT_KEY });
  t.equal(config.store.type, 'redis');
  t.same(configWarnings(config).filter((w) => w.startsWith('portal.login')), [], 'login rules that tell a right password from a wrong one');
});

t.test('compose: read-only gateway, audit volume, admin port on loopback only, every key from .env', async (t) => {
  const [compose] = documents('docker/compose.yaml');
  const gw = compose.services.gateway;
  t.equal(gw.read_only, true);
  t.ok(gw.tmpfs.some((m: string) => m.split(':')[0] === '/tmp'));
  t.ok(gw.volumes.includes(`audit:${AUDIT_DIR}`));
  t.ok('audit' in compose.volumes);
  t.same(gw.ports, ['8080:8080', '127.0.0.1:9090:9090']);
  for (const key of ['MFA_SIGNING_KEY', 'MFA_ENCRYPTION_KEY', 'MFA_PSEUDONYM_KEY', 'MFA_AUDIT_KEY']) t.match(gw.environment[key], `\${${key}:?`, key);
});

t.test('Dockerfile: non-root, the audit directory is the volume, the health check probes the admin port', async (t) => {
  const file = readFileSync('docker/Dockerfile', 'utf8');
  const runStage = file.slice(file.lastIndexOf('\nFROM '));
  t.match(runStage, /^USER 1000:1000$/m);
  t.match(runStage, `VOLUME ["${AUDIT_DIR}"]`);
  t.match(runStage, `mkdir -p ${AUDIT_DIR} && chown -R node:node /var/lib/mfa-gateway`);
  t.match(runStage, /^ENV ADMIN_PORT=9090$/m);
  t.match(runStage, /HEALTHCHECK[^\n]*\\\n\s+CMD .*process\.env\.ADMIN_PORT\|\|9090\)\+'\/health\/live'/);
  t.ok(runStage.indexOf('RUN mkdir') < runStage.indexOf('USER'), 'the directory is made before dropping root');
});

t.test('Dockerfile: the image holds the shipped config files and the runtime, never an operator\'s config, keys or the tests', async (t) => {
  const file = readFileSync('docker/Dockerfile', 'utf8').replace(/\\\n\s*/g, ' ');
  const runStage = file.slice(file.lastIndexOf('\nFROM '));
  const copies = [...runStage.matchAll(/^COPY (.*)$/gm)].map((m) => m[1]!.split(/\s+/));
  // What the build stage made: only the gateway and the demo portal compose runs from the same image.
  const fromBuild = copies.filter((c) => c[0] === '--from=build').map((c) => c[1]);
  t.same(fromBuild.sort(), ['/app/dist/src', '/app/dist/test/fixtures/demo-portal.js', '/app/node_modules'].sort());
  // From the context: the config files the repository ships by name (a real gateway.yaml or a key put in config/ is
  // no part of the image), and each of them.
  const local = copies.filter((c) => !c[0]!.startsWith('--')).flatMap((c) => c.slice(0, -1));
  const shipped = ['config/demo-groups.yaml', 'config/demo.yaml', 'config/gateway.example.yaml'];
  t.same(local.filter((f) => f.startsWith('config')).sort(), shipped, 'config files named one by one');
  for (const f of shipped) t.ok(statSync(f).isFile(), `${f} is there`);
  // The build context leaves out anything else put in config/ (docker build sends the context before any COPY).
  const ignore = readFileSync('.dockerignore', 'utf8').split('\n').map((l) => l.trim());
  t.ok(ignore.includes('config/*'), '.dockerignore leaves config/ out');
  for (const f of shipped) t.ok(ignore.includes(`!${f}`), `but for ${f}`);
  t.ok(ignore.indexOf('config/*') < Math.min(...shipped.map((f) => ignore.indexOf(`!${f}`))), 'the exceptions after the rule');
  // What compose runs from the image is in it.
  const compose = parse(readFileSync('docker/compose.yaml', 'utf8'));
  t.ok(fromBuild.some((f) => `/app/${compose.services.portal.entrypoint[1]}` === f), 'the demo portal compose runs');
  t.match(runStage, /^ENTRYPOINT \["node", "dist\/src\/main\.js"\]$/m);
});

t.test('Kubernetes: hardened Deployment, probes on the admin port, mounts matching the ConfigMap', async (t) => {
  const deployment = k8s('deployment.yaml');
  const spec = deployment.spec.template.spec;
  const c = spec.containers[0];
  t.equal(deployment.spec.replicas, 3);
  t.match(spec.securityContext, { runAsNonRoot: true, runAsUser: 1000, fsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } });
  t.match(c.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
  t.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory);
  t.same(c.ports.map((p: { name: string; containerPort: number }) => [p.name, p.containerPort]), [['http', 8080], ['admin', 9090]]);
  t.match(c.livenessProbe.httpGet, { path: '/health/live', port: 'admin' });
  t.match(c.readinessProbe.httpGet, { path: '/health/ready', port: 'admin' });
  t.match(c.startupProbe.httpGet, { path: '/health/live', port: 'admin' });
  const mount = (name: string) => c.volumeMounts.find((m: { name: string }) => m.name === name);
  const volume = (name: string) => spec.volumes.find((v: { name: string }) => v.name === name);
  t.equal(volume('config').configMap.name, 'mfa-gateway-config');
  t.equal(volume('keys').secret.secretName, 'mfa-gateway-keys');
  t.equal(volume('keys').secret.defaultMode, 0o440);
  t.ok(volume('audit').emptyDir);
  t.equal(mount('audit').mountPath, AUDIT_DIR);
  t.equal(mount('tmp').mountPath, '/tmp');
  t.same(c.args, ['serve', '--config', `${mount('config').mountPath}/gateway.yaml`]);
  const labels = deployment.spec.template.metadata.labels;
  t.same(deployment.spec.selector.matchLabels, labels);

  // The ConfigMap's gateway.yaml validates once its *_FILE paths point at files; those paths are in the keys mount.
  const configMap = k8s('configmap.yaml');
  const raw = parse(configMap.data['gateway.yaml']);
  const secret = k8s('secret.example.yaml');
  const dir = mkdtempSync(join(tmpdir(), 'k8s-keys-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const files: string[] = [];
  const redirect = (node: any): void => {
    if (!node || typeof node !== 'object') return;
    for (const [k, v] of Object.entries(node)) {
      if (k.endsWith('_FILE') && typeof v === 'string') {
        files.push(v);
        const local = join(dir, v.split('/').pop()!);
        writeFileSync(local, randomKey());
        node[k] = local;
      } else redirect(v);
    }
  };
  redirect(raw);
  for (const f of files) {
    t.equal(f.slice(0, f.lastIndexOf('/')), mount('keys').mountPath, `${f} is in the Secret mount`);
    t.ok(f.split('/').pop()! in secret.stringData, `${f} is a key of the Secret`);
  }
  t.same(files.map((f) => f.split('/').pop()).sort(), Object.keys(secret.stringData).sort(), 'every key of the Secret is read by the config, through a file');
  t.throws(() => resolveConfig(raw, { env: {} }), /audit.dir: environment variable POD_NAME is not set/, 'no pod name, no start');
  const config = resolveConfig(raw, { env: { POD_NAME: 'mfa-gateway-7d9f-abcde' } });
  t.same(configWarnings(config).filter((w) => w.startsWith('portal.login')), [], 'login rules that tell a right password from a wrong one');
  t.match(config.store, { type: 'redis' });
  t.match(config.admin, { host: '0.0.0.0', port: 9090 });
  t.match(config.audit, { enabled: true, dir: `${AUDIT_DIR}/mfa-gateway-7d9f-abcde` }, 'each replica its own audit directory');
  const podName = deployment.spec.template.spec.containers[0].env.find((e: { name: string }) => e.name === 'POD_NAME');
  t.same(podName?.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } }, 'POD_NAME is the pod name');

  for (const [file, port] of [['service.yaml', 'http'], ['metrics-service.yaml', 'admin']] as const) {
    const service = k8s(file);
    t.same(service.spec.selector, labels, `${file} selects the pods`);
    t.equal(service.spec.ports[0].targetPort, port, `${file} targets ${port}`);
  }
  t.equal(k8s('service.yaml').spec.ports.length, 1, 'the admin port is not in the user-facing Service');
  t.same(deployment.metadata.namespace, k8s('namespace.yaml').metadata.name);
});
