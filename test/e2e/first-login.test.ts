// A real browser (Debian's Chromium via playwright-core) signs in through the gateway: cookies, forms, pages.
import t from 'tap';
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { ALICE, startStack, totpAt } from '../helpers/stack.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

t.test('first login and a second sign-in in Chromium, on a phone-sized screen', async (t) => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install chromium)`);
  const s = await startStack();
  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(async () => {
    await browser.close();
    await s.close();
  });
  // localhost is a secure context, so the gateway's __Host- Secure cookies work over plain HTTP here.
  const base = s.url.replace('127.0.0.1', 'localhost');
  const context = await browser.newContext({ viewport: { width: 320, height: 640 } });
  const page = await context.newPage();

  await page.goto(`${base}/records`);
  t.match(page.url(), /\/login$/, 'signed out: sent to the portal login page');
  await page.fill('#username', ALICE.username);
  await page.fill('#password', ALICE.password);
  await page.click('button[type=submit]');
  await page.waitForURL(/\/_mfa\/enrol$/);
  await page.click('a[href="/_mfa/enrol/totp"]');
  await page.waitForURL(/\/_mfa\/enrol\/totp$/);
  t.ok(await page.isVisible('svg'), 'QR code shown');
  const secret = (await page.textContent('#secret'))!.replaceAll(' ', '');
  const scrollWidth = await page.evaluate(() => document.documentElement.scrollWidth);
  t.ok(scrollWidth <= 320, `no horizontal scrolling at 320 px (${scrollWidth})`);
  if (process.env.E2E_SCREENSHOTS) await page.screenshot({ path: `${process.env.E2E_SCREENSHOTS}/enrol.png`, fullPage: true });

  await page.fill('#code', '000000');
  await page.click('button[type=submit]');
  if (process.env.E2E_SCREENSHOTS) await page.screenshot({ path: `${process.env.E2E_SCREENSHOTS}/wrong.png`, fullPage: true });
  t.equal(await page.getAttribute('#code', 'aria-invalid'), 'true', 'wrong code marked on its field');
  t.match(await page.textContent('#code-error'), 'did not work', 'error tied to the field is shown');

  await page.fill('#code', await totpAt(secret, s.clock.now()));
  await page.click('button[type=submit]');
  const codes = await page.locator('#recovery-codes li').allTextContents();
  t.equal(codes.length, 10, 'ten recovery codes');
  if (process.env.E2E_SCREENSHOTS) await page.screenshot({ path: `${process.env.E2E_SCREENSHOTS}/recovery.png`, fullPage: true });
  await page.check('#ack');
  await page.click('button[type=submit]');
  if (process.env.E2E_SCREENSHOTS) await page.screenshot({ path: `${process.env.E2E_SCREENSHOTS}/after-ack.png`, fullPage: true });
  await page.waitForURL(/\/records$/);
  t.match(await page.textContent('body'), 'Signed in as alice');
  const cookies = await context.cookies();
  t.same(cookies.map((c) => c.name).sort(), ['XSRF-TOKEN', '__Host-mfa-session'], 'the browser holds only the gateway session and the allow-listed cookie');
  t.ok(cookies.find((c) => c.name === '__Host-mfa-session')?.httpOnly);

  await page.goto(`${base}/logout`);
  t.match(page.url(), /\/login$/);
  s.clock.advance(30_000);
  await page.fill('#username', ALICE.username);
  await page.fill('#password', ALICE.password);
  await page.click('button[type=submit]');
  await page.waitForURL(/\/_mfa\/verify$/);
  await page.fill('#code', await totpAt(secret, s.clock.now()));
  await page.click('button[type=submit]');
  await page.waitForURL(/\/records$/);
  t.match(await page.textContent('body'), 'Signed in as alice', 'second sign-in: password, then a code');
});
