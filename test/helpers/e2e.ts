// Real-browser tests: the gateway on http://localhost:<port> (a secure context, the origin passkeys are bound to),
// Debian's Chromium driven by playwright-core, and what the e2e files share: sign-in steps, axe, screenshots.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser as Chromium, type BrowserContext, type CDPSession, type Page } from 'playwright-core';
import type { DemoUser } from '../fixtures/demo-portal.js';
import { freePort } from './redis.js';
import { ALICE, startStack, totpAt, type Stack } from './stack.js';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** The path of the page a browser tab shows (where the gateway or the portal sent it). */
export const url = (page: Page) => new URL(page.url()).pathname;

export const PHONE = { width: 390, height: 844 };
export const DESKTOP = { width: 1280, height: 800 };

type Teardown = { teardown(fn: () => unknown): void };

/**
 * One headless Chromium per test file (never downloaded: Debian's, or CHROMIUM_PATH). `backForwardCache`: on, as in
 * the browsers people use (playwright turns it off).
 */
export async function launchChromium(t: Teardown, opts: { backForwardCache?: boolean } = {}): Promise<Chromium> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install chromium)`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, ...(opts.backForwardCache ? { ignoreDefaultArgs: ['--disable-back-forward-cache'] } : {}) });
  t.teardown(() => browser.close());
  return browser;
}

export interface E2eStack extends Stack {
  /** http://localhost:<port>, for Chromium (`url` is the same server on 127.0.0.1, for the HTTP test browser). */
  base: string;
  /** An invitation code for a user, issued the way the CLI does (invite mode). */
  issueInvite(username: string): Promise<string>;
}

/**
 * The demo portal and the gateway in front of it, listening on a port chosen before the config is built, so that
 * the WebAuthn origin can name it. (startStack listens on any free port, which passkeys in a real browser cannot use.)
 */
export async function startE2eStack(t: Teardown, opts: { patch?: (raw: Record<string, any>) => void } = {}): Promise<E2eStack> {
  for (let attempt = 1; ; attempt++) {
    try {
      const s = await listenOnce(opts);
      t.teardown(s.close);
      return s;
    } catch (err) {
      // Another process took the free port between the probe and the listen: try another one.
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt === 3) throw err;
    }
  }
}

async function listenOnce(opts: { patch?: (raw: Record<string, any>) => void }): Promise<E2eStack> {
  const port = await freePort();
  const base = `http://localhost:${port}`;
  const s = await startStack({
    patch: (raw) => {
      raw.server.port = port;
      raw.webauthn = { rpId: 'localhost', origins: [base] };
      opts.patch?.(raw);
    },
  });
  return {
    ...s,
    base,
    issueInvite: async (username) => {
      const gw = s.app.gateway;
      return (await gw.enrolment.issueInvite(gw.pidOf(username)!)).code;
    },
  };
}

/** A fresh context (cookies, storage) and its page: one per scenario, closed with it. */
export async function newPage(t: Teardown, browser: Chromium, viewport = PHONE): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport });
  t.teardown(() => context.close());
  const page = await context.newPage();
  return { context, page };
}

export interface VirtualAuthenticator {
  cdp: CDPSession;
  id: string;
  /** The credentials it holds (resident passkeys), as Chrome reports them. */
  credentials(): Promise<{ credentialId: string; rpId?: string; signCount: number }[]>;
}

/** A platform authenticator with user verification that answers at once (Chrome DevTools Protocol, WebAuthn domain). */
export async function addVirtualAuthenticator(context: BrowserContext, page: Page): Promise<VirtualAuthenticator> {
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  return {
    cdp,
    id: authenticatorId,
    credentials: async () => (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials,
  };
}

/**
 * Does something that loads a new document (a click on a link or a submit button) and waits for it to load, also
 * when it is the same URL again (a form answered with its page and an error), which waitForURL cannot tell apart.
 */
export async function andWait(page: Page, action: Promise<unknown> | (() => Promise<unknown>)): Promise<void> {
  await Promise.all([page.waitForNavigation(), typeof action === 'function' ? action() : action]);
}

/** Submits the form of the page's main content (the first, or the one `selector` picks). */
export const submit = (page: Page, selector = 'main button[type=submit]') => andWait(page, () => page.locator(selector).first().click());

/** The portal's own login form, through the gateway. */
export async function submitPassword(page: Page, s: E2eStack, user: DemoUser = ALICE): Promise<void> {
  await page.goto(`${s.base}/login`);
  await page.fill('#username', user.username);
  await page.fill('#password', user.password);
  await submit(page, 'button[type=submit]');
}

/** A 6-digit code that is not valid around `ms` (the gateway accepts one step either side). */
export async function wrongTotp(secret: string, ms: number): Promise<string> {
  const valid = new Set(await Promise.all([-2, -1, 0, 1, 2].map((step) => totpAt(secret, ms + step * 30_000))));
  for (let n = 123456; ; n++) if (!valid.has(String(n))) return String(n);
}

/** The TOTP secret shown on an enrolment page, without the grouping spaces. */
export async function shownSecret(page: Page): Promise<string> {
  return (await page.textContent('#secret'))!.replaceAll(/\s/g, '');
}

/** The recovery codes shown once after enrolment. */
export const shownCodes = (page: Page) => page.locator('#recovery-codes li').allTextContents();

/** From the factor choice: an authenticator app, its first code, the recovery codes, and on to the portal. */
export async function enrolTotp(page: Page, s: E2eStack): Promise<{ secret: string; codes: string[] }> {
  const p = s.config.server.prefix;
  await andWait(page, page.click(`a[href="${p}/enrol/totp"]`));
  const secret = await shownSecret(page);
  await page.fill('#code', await totpAt(secret, s.clock.now()));
  await submit(page);
  if (page.url() !== `${s.base}${p}/recovery-codes`) throw new Error(`TOTP enrolment ended at ${page.url()}`);
  const codes = await shownCodes(page);
  await page.check('#ack');
  await submit(page);
  return { secret, codes };
}

/** Where this run's screenshots go: E2E_SCREENSHOTS, else a folder in the OS temp dir (never in the repository). */
export function screenshotDir(): string {
  const dir = process.env.E2E_SCREENSHOTS ?? join(tmpdir(), 'mfa-gateway-screenshots');
  mkdirSync(dir, { recursive: true });
  return dir;
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
export const WCAG_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'];

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: string[];
}

/**
 * axe-core on the page as it is, WCAG 2.0–2.2 A and AA rules. The gateway's CSP allows only scripts with the
 * response's nonce, so a <script> tag (page.addScriptTag) is refused; axe is evaluated through the DevTools
 * protocol instead, which CSP does not govern. This keeps the CSP on (no bypassCSP), so the page axe sees is laid
 * out and scripted exactly as a user's is (a blocked inline style, say, would show).
 */
export async function axeViolations(page: Page): Promise<AxeViolation[]> {
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(AXE_SOURCE);
  return page.evaluate(async (tags) => {
    const axe = (window as unknown as { axe: { run(ctx: Document, opts: object): Promise<{ violations: any[] }> } }).axe;
    const result = await axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n: { target: string[]; failureSummary: string }) => `${n.target.join(' ')}: ${n.failureSummary}`) }));
  }, WCAG_TAGS);
}

export interface FocusStop {
  /** Its place among the page's tabbable elements (-1: none of them, e.g. the document itself). */
  index: number;
  /** Tag, id and text, to name it in test output. */
  element: string;
  tag: string;
  outline: string;
  boxShadow: string;
  /** Where it is in the window. */
  box: string;
  /** Shows an outline or box-shadow, and is inside the window (not scrolled away or parked off-screen). */
  visible: boolean;
}

const TABBABLE = 'a[href], button:not([disabled]), input:not([type=hidden]):not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

/** How many elements of the page the keyboard can reach (rendered, not disabled). */
export function tabbableCount(page: Page): Promise<number> {
  return page.evaluate((sel) => [...document.querySelectorAll(sel)].filter((el) => el.checkVisibility()).length, TABBABLE);
}

/** Presses Tab (or Shift+Tab) and says where focus went and how that shows. */
export async function pressTab(page: Page, shift = false): Promise<FocusStop> {
  await page.keyboard.press(shift ? 'Shift+Tab' : 'Tab');
  return focused(page);
}

export function focused(page: Page): Promise<FocusStop> {
  return page.evaluate((sel) => {
    const el = document.activeElement ?? document.body;
    const tabbable = [...document.querySelectorAll(sel)].filter((e) => e.checkVisibility());
    const style = getComputedStyle(el);
    const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0 ? `${style.outlineStyle} ${style.outlineWidth} ${style.outlineColor}` : 'none';
    const box = el.getBoundingClientRect();
    // Inside the window, give or take a pixel of rounding (Chrome scrolls a focused element into view only so far).
    const onScreen = box.width > 0 && box.height > 0 && box.left >= -1 && box.top >= -1 && box.right <= innerWidth + 1 && box.bottom <= innerHeight + 1;
    const text = (el.textContent || el.getAttribute('name') || '').trim().replace(/\s+/g, ' ').slice(0, 40);
    return {
      index: tabbable.indexOf(el),
      element: `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''} "${text}"`,
      tag: el.tagName.toLowerCase(),
      outline,
      boxShadow: style.boxShadow,
      box: `${Math.round(box.left)},${Math.round(box.top)} ${Math.round(box.width)}×${Math.round(box.height)} in ${innerWidth}×${innerHeight}`,
      visible: el !== document.body && (outline !== 'none' || style.boxShadow !== 'none') && onScreen,
    };
  }, TABBABLE);
}

/** How far the page is wider than the window (0: no horizontal scrolling). */
export async function horizontalOverflow(page: Page): Promise<number> {
  return page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
}
