// A language written right to left in Chromium: the pages laid out from the right, the codes people type still
// left to right.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { andWait, launchChromium, PHONE, startE2eStack, submitPassword } from '../helpers/e2e.js';

const P = '/_mfa';
const browser = await launchChromium(t);

/** The gateway with an Arabic catalogue, and a tab whose browser asks for Arabic, at the authenticator app's page. */
async function arabicEnrolment(t: Parameters<Parameters<typeof t.test>[0]>[0]) {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-rtl-'));
  writeFileSync(join(dir, 'ar.json'), JSON.stringify({ enrolTitle: 'إعداد تطبيق المصادقة', enrolSubmit: 'تأكيد' }));
  const s = await startE2eStack(t, { patch: (raw) => (raw.ui = { localesDir: dir }) });
  const context = await browser.newContext({ viewport: PHONE, locale: 'ar-EG' });
  t.teardown(() => context.close());
  const page = await context.newPage();
  await submitPassword(page, s);
  await andWait(page, page.click(`a[href="${P}/enrol/totp"]`));
  return page;
}

t.test('the code field stays left to right, so that "123 456" does not show as "456 123"', async (t) => {
  const page = await arabicEnrolment(t);
  t.equal(await page.evaluate(() => document.documentElement.dir), 'rtl');
  t.equal(await page.$eval('#code', (e) => getComputedStyle(e).direction), 'ltr');
});

t.test('buttons start at the right edge, as the text does, with their gap on the left', async (t) => {
  const page = await arabicEnrolment(t);
  const box = await page.$eval('main form button[type=submit]', (b) => {
    const [button, form] = [b.getBoundingClientRect(), b.closest('form')!.getBoundingClientRect()];
    const style = getComputedStyle(b);
    return { fromRight: form.right - button.right, gapLeft: style.marginLeft };
  });
  t.same(box, { fromRight: 0, gapLeft: '8px' });
});
