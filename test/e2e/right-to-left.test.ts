// A language written right to left in Chromium: the pages laid out from the right, the codes people type still
// left to right, and the English shown where its catalogue leaves a message out marked so, also by the page's script.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Locator } from 'playwright-core';
import { addVirtualAuthenticator, andWait, enrolTotp, launchChromium, PHONE, shownSecret, startE2eStack, submit, submitPassword, url } from '../helpers/e2e.js';
import { totpAt } from '../helpers/stack.js';
import en from '../../src/ui/locales/en.json' with { type: 'json' };

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

/**
 * Where the name's characters are drawn: the left edge of its first one and of its last one, in whichever text node
 * of the element holds it. Laid out as written, "Blue key!" ends to the right of where it starts; mixed into an
 * Arabic sentence without isolation, its "!" takes the sentence's direction and is drawn at its left ("!Blue key").
 */
async function nameEdges(element: Locator, name: string) {
  return element.evaluate(
    (element, name) => {
      const walker = document.createTreeWalker(element, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode() as Text | null; node; node = walker.nextNode() as Text | null) {
        const at = node.data.indexOf(name);
        if (at === -1) continue;
        const left = (i: number) => {
          const range = document.createRange();
          range.setStart(node!, i);
          range.setEnd(node!, i + 1);
          return range.getBoundingClientRect().left;
        };
        return { first: left(at), last: left(at + name.length - 1), isolatedBy: node.parentElement!.localName };
      }
      throw new Error(`${name} is not in one text node of ${element.outerHTML}`);
    },
    name,
  );
}

t.test('a name someone chose keeps its own order in an Arabic sentence: "Blue key!", not "!Blue key"', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-rtl-'));
  writeFileSync(
    join(dir, 'ar.json'),
    JSON.stringify({ 'securityKind.totp': 'تطبيق المصادقة', securityRenameLabel: 'اسم جديد لـ {name}', securityRemove: 'إزالة {name}', securityRemoveTitle: 'إزالة {name}؟' }),
  );
  const s = await startE2eStack(t, { patch: (raw) => (raw.ui = { localesDir: dir }) });
  const context = await browser.newContext({ viewport: PHONE, locale: 'ar-EG' });
  t.teardown(() => context.close());
  const page = await context.newPage();
  await submitPassword(page, s);
  await enrolTotp(page, s);
  // A second app, named by its person, so that both can be removed. Its punctuation at the end is neutral, and
  // without isolation goes with the Arabic around it. ("My phone (2)" Chromium lays out right even so: the digit
  // goes with the letters before it, and the brackets pair.)
  const name = 'Blue key!';
  await page.goto(`${s.base}${P}/security/totp`);
  await page.fill('#name', name);
  await page.fill('#code', await totpAt(await shownSecret(page), s.clock.now()));
  await submit(page);
  t.equal(url(page), `${P}/security`);

  const item = page.locator('.factors > li').filter({ has: page.locator('strong', { hasText: name }) });
  for (const [what, element] of [
    ['the name in the list, before its kind', item.locator('strong')],
    ['the rename label', item.locator('label')],
    ['the remove button', item.locator('button.secondary')],
  ] as const) {
    const edges = await nameEdges(element, name);
    t.equal(edges.isolatedBy, 'bdi', `${what}: the name in a <bdi>`);
    t.ok(edges.last > edges.first, `${what}: drawn left to right, its "!" last`);
  }
  t.equal(await item.locator('label').textContent(), `اسم جديد لـ ${name}`, 'the text itself as it was');
  t.equal(await page.getByRole('button', { name: `إزالة ${name}` }).count(), 1, 'and so the accessible name');

  await andWait(page, item.locator('button.secondary').click());
  t.equal(url(page), `${P}/security/remove`);
  for (const [what, element] of [
    ['the heading', page.locator('h1')],
    ['the button', page.locator('main form button[type=submit]')],
  ] as const) {
    const edges = await nameEdges(element, name);
    t.equal(edges.isolatedBy, 'bdi', `${what}: the name in a <bdi>`);
    t.ok(edges.last > edges.first, `${what}: drawn left to right`);
  }
  // A title holds no markup: the name between FSI and PDI, the characters that isolate in plain text.
  t.equal(await page.title(), `إزالة \u2068${name}\u2069؟ – \u2068Riverbend Health Patient Portal\u2069`, "the portal's name too");
  t.equal(await page.locator('header .brand bdi').textContent(), 'Riverbend Health Patient Portal');
});

/** The gateway with an Arabic catalogue of these messages, and a tab whose browser asks for Arabic. */
async function arabic(t: Parameters<Parameters<typeof t.test>[0]>[0], messages: Record<string, string>) {
  const dir = mkdtempSync(join(tmpdir(), 'mfa-rtl-'));
  writeFileSync(join(dir, 'ar.json'), JSON.stringify(messages));
  const s = await startE2eStack(t, { patch: (raw) => (raw.ui = { localesDir: dir }) });
  const context = await browser.newContext({ viewport: PHONE, locale: 'ar-EG' });
  t.teardown(() => context.close());
  return { s, context, page: await context.newPage() };
}

/** A status's text, the language a screen reader reads it in (the nearest lang), and the direction it is laid out in. */
function spoken(status: Locator) {
  return status.evaluate((element) => {
    const holder = document.createTreeWalker(element, NodeFilter.SHOW_TEXT).nextNode()!.parentElement!;
    return { text: element.textContent, lang: holder.closest('[lang]')!.getAttribute('lang'), direction: getComputedStyle(holder).direction };
  });
}

t.test("the passkey script's messages the catalogue leaves out are marked as English, left to right; a translated one is not", async (t) => {
  const cancelled = 'أُلغي طلب مفتاح المرور أو انتهت مهلته. حاول مرة أخرى عندما تكون مستعدًا.';
  const { s, context, page } = await arabic(t, { passkeyCancelled: cancelled });
  const authenticator = await addVirtualAuthenticator(context, page);
  await submitPassword(page, s);
  await andWait(page, page.getByRole('button', { name: 'Create passkey' }).click());
  await page.check('#ack');
  await submit(page);
  t.equal(url(page), '/records');

  // The same device again: the browser refuses, and the script says so.
  await page.goto(`${s.base}${P}/security/passkey`);
  await page.getByRole('button', { name: 'Create passkey' }).click();
  const status = page.getByRole('alert');
  await status.waitFor({ timeout: 10_000 });
  t.same(await spoken(status), { text: en.passkeyAlreadyThere, lang: 'en', direction: 'ltr' }, 'left out: in English');

  // The device's passkey gone: the sign-in's request fails as cancelled, a message translated.
  await authenticator.cdp.send('WebAuthn.clearCredentials', { authenticatorId: authenticator.id });
  await page.goto(`${s.base}${P}/logout`);
  await submit(page);
  await submitPassword(page, s);
  await page.getByRole('button', { name: 'Use your passkey or security key' }).click();
  await status.waitFor({ timeout: 10_000 });
  t.same(await spoken(status), { text: cancelled, lang: 'ar', direction: 'rtl' }, 'translated: the page language');

  // The same sign-in in a browser without passkeys.
  const without = await context.newPage();
  await without.addInitScript(() => delete (window as { PublicKeyCredential?: unknown }).PublicKeyCredential);
  await without.goto(`${s.base}${P}/verify`);
  t.same(await spoken(without.getByRole('alert')), { text: en.passkeyUnsupported, lang: 'en', direction: 'ltr' }, 'no passkeys here: in English');
});

t.test('so is "Copied" on the recovery codes page', async (t) => {
  const { s, context, page } = await arabic(t, {});
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: s.base });
  await submitPassword(page, s);
  await andWait(page, page.click(`a[href="${P}/enrol/totp"]`));
  await page.fill('#code', await totpAt(await shownSecret(page), s.clock.now()));
  await submit(page);
  t.equal(url(page), `${P}/recovery-codes`);
  await page.getByRole('button', { name: 'Copy them' }).click();
  const status = page.getByRole('status').filter({ hasText: 'Copied' });
  await status.waitFor();
  t.same(await spoken(status), { text: en.recoveryCopied, lang: 'en', direction: 'ltr' });
});

t.test("so are the gateway's own answers to the passkey script: their Content-Language says which language the message is in", async (t) => {
  const failed = 'لم ينجح ذلك. حاول مرة أخرى، أو اختر طريقة أخرى.';
  const { s, context, page } = await arabic(t, { passkeyFailed: failed });
  await addVirtualAuthenticator(context, page);
  await submitPassword(page, s);
  await andWait(page, page.getByRole('button', { name: 'Create passkey' }).click());
  await page.check('#ack');
  await submit(page);
  await page.goto(`${s.base}${P}/logout`);
  await submit(page);
  await submitPassword(page, s);
  t.equal(url(page), `${P}/verify`);
  const use = page.getByRole('button', { name: 'Use your passkey or security key' });
  const status = page.getByRole('alert');

  // An assertion from a passkey not the user's (its id changed on the way): refused, in a message translated.
  await page.route(`**${P}/verify/passkey`, (route) => {
    const body = JSON.parse(route.request().postData()!) as { credential: { id: string } };
    body.credential.id = `x${body.credential.id}`;
    return route.continue({ postData: JSON.stringify(body) });
  });
  await use.click();
  await status.waitFor({ timeout: 10_000 });
  t.same(await spoken(status), { text: failed, lang: 'ar', direction: 'rtl' }, 'refused: translated, the page language');
  await page.unrouteAll();

  // A call the gateway cannot read (a type it does not take): its error message, which the catalogue leaves out.
  await page.route(`**${P}/verify/passkey/options`, (route) => route.continue({ headers: { ...route.request().headers(), 'content-type': 'application/xml' } }));
  await use.click();
  await status.filter({ hasText: en['error.GW_ERR_UNSUPPORTED_MEDIA_TYPE'] }).waitFor({ timeout: 10_000 });
  t.same(await spoken(status), { text: en['error.GW_ERR_UNSUPPORTED_MEDIA_TYPE'], lang: 'en', direction: 'ltr' }, 'an error: in English');
});
