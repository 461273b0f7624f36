// The gateway's server-rendered pages: plain HTML forms that work without JavaScript (passkeys aside), no external
// assets, every text from the message catalogue.
import type { MessageKey, Translate } from './i18n.js';

export interface PageContext {
  portalName: string;
  prefix: string;
  lang: string;
  /** The direction of the language's script. */
  dir: 'ltr' | 'rtl';
  t: Translate;
  /** Whether a text from `t` is a message the language's catalogue leaves out, shown in English. */
  english: (text: string) => boolean;
  /** The nonce of this response's Content-Security-Policy, for the page's scripts. */
  nonce: string;
  hasLogo: boolean;
  /**
   * A sign-in in progress: the seconds left to finish it (said at the top of its pages in minutes, and warned of
   * before the end), with a button for more time while it can be given (`csrf`: the login's token; `back`: this page,
   * under the prefix). `asked`: more time was just asked for, and given (`more`) or not yet (`same`: too soon, the
   * page says when). `of: 'codes'`: the sign-in's time at its recovery codes, which cannot be given more (the codes
   * are shown once): said and warned of in words of their own, as the factor and its codes are saved already (they
   * still work once the time is up: to sign in again). `of: 'changes'`: instead, the time left to make changes on the
   * security page without a step-up, said and warned of alike; no more of it can be given (only a step-up gives it).
   */
  timeLimit?: TimeLimit;
  /**
   * A page shown to someone signed in: it links to their sign-in settings. No other page does: a sign-in in progress
   * has none yet (the link would lead away to the login page, and from the recovery codes, lose them), and someone
   * signed out would only be asked to sign in. Nor do new recovery codes made on the settings (see recoveryCodesPage).
   */
  signedIn?: boolean;
}

export interface TimeLimit {
  secondsLeft: number;
  of?: 'changes' | 'codes';
  moreTime?: { csrf: string; back: string };
  asked?: 'more' | 'same';
}

/** A passkey button: the script asks the gateway for options, runs the browser ceremony and posts the result. */
export interface PasskeyAction {
  ceremony: 'register' | 'authenticate';
  optionsUrl: string;
  finishUrl: string;
  csrf: string;
  label: MessageKey;
  /**
   * A text field whose value is sent as the credential's name (registration); `name`: its value, if not the default.
   * `keep`: the mark with which the page, opened again by the script with the name typed, fills it in (see PAGE_OVER
   * in gateway.js); none where the page does not read a name back.
   */
  nameField?: boolean;
  name?: string;
  keep?: string;
  /**
   * The page the script opens again when the ceremony can no longer go on, where the page's own address is not it (a
   * form's answer has the form's address, without the query the page was opened with).
   */
  page?: string;
}

/**
 * Escaped for HTML: attribute values, and text that is no message (names, codes). An attribute cannot carry a
 * language of its own (lang on its element would cover the element's content too, and what is typed in a field): a
 * message in one that the page's catalogue leaves out is marked on its element only where that holds nothing else
 * (see securityNav, qrCode), or passed on with its language for the script that shows it (scriptText); in a field's
 * value it is English taken as the page's language, left so.
 */
const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The lang (and dir, on a right-to-left page) of English text in the page, as attributes of its element. */
function inEnglish(ctx: PageContext): string {
  return ` lang="en"${ctx.dir === 'rtl' ? ' dir="ltr"' : ''}`;
}

/**
 * A message as an element's text, escaped. One the page's catalogue leaves out, shown in English, is marked so (WCAG
 * 3.1.2): a screen reader reads it in English, not with the page language's voice and rules; on a right-to-left page
 * it is laid out left to right ("Enter the code.", not ".Enter the code").
 */
function msg(ctx: PageContext, text: string): string {
  return ctx.english(text) ? `<span${inEnglish(ctx)}>${esc(text)}</span>` : esc(text);
}

/**
 * A message the page's script shows (in a live region), as data attributes of its element: `data-<name>`, and for one
 * shown in English, `data-<name>-lang="en"`, for the script to mark it so where it writes it, as msg does.
 */
function scriptText(ctx: PageContext, name: string, text: string): string {
  return ` data-${name}="${esc(text)}"${ctx.english(text) ? ` data-${name}-lang="en"` : ''}`;
}

/** First strong isolate and pop directional isolate: bidi isolation in plain text, where no <bdi> can go. */
const [FSI, PDI] = ['\u2068', '\u2069'];

/**
 * A message whose {name} is a name someone chose (a factor's), kept apart from the text around it for the bidi
 * algorithm: unisolated, on a right-to-left page "Blue key!" shows as "!Blue key", and a right-to-left name on a
 * left-to-right page takes the message's punctuation or numbers next to it into its own order. `html`: the message
 * escaped, the name in a <bdi> (its own direction, from its first letter; textContent, and so accessible names, as
 * they were). `text`: for the <title>, which holds no markup: the name between FSI and PDI, invisible characters that
 * tab and window titles lay out as the <bdi> is. Not in attribute values: none holds a name but the name field's
 * value, which is sent back and would keep the two characters in the name.
 */
function named(ctx: PageContext, key: MessageKey, name: string): { html: string; text: string } {
  const { t } = ctx;
  // t without values leaves {name} as it is, and escaping its braces; a function, so that a name's "$&" is no pattern.
  return { html: msg(ctx, t(key)).replaceAll('{name}', () => `<bdi>${esc(name)}</bdi>`), text: t(key, { name: `${FSI}${name}${PDI}` }) };
}

/**
 * `error`: the page answers a mistake in one of its fields, and its title says so first (WCAG 2.4.2, 3.3.1).
 * `heading`: the <h1> as HTML, where it is not the title escaped (a name in it, isolated).
 * `typedIn`: the id of the page's form with a field to type a code in, which "I need more time" sends along (see
 * timeWarning). `settings`: the page is the sign-in settings, which their link says (aria-current).
 */
function layout(ctx: PageContext, title: string, body: string, opts: { scripts?: 'passkeys' | 'page'; error?: boolean; heading?: string; typedIn?: string; settings?: boolean } = {}): string {
  const { t, prefix } = ctx;
  // At the end of <body>: the page's script looks for its buttons when it runs (in <head>, it found none). Passkeys
  // need the WebAuthn browser library too. A page with a time limit has the script for its warning.
  const script = opts.scripts ?? (ctx.timeLimit ? 'page' : undefined);
  const scripts = script
    ? `${script === 'passkeys' ? `<script nonce="${ctx.nonce}" src="${prefix}/assets/webauthn-browser.js"></script>\n` : ''}<script nonce="${ctx.nonce}" src="${prefix}/assets/gateway.js"></script>`
    : '';
  // The portal's name, as set, is isolated as a factor's is (see `named`): "Patient Portal (EU)" next to Arabic. The
  // title holds no markup: it is marked English as a whole when its messages all are (the portal's name is a name).
  const titleText = opts.error ? t('errorPageTitle', { title }) : title;
  const englishTitle = ctx.english(title) && ctx.english(titleText);
  return `<!doctype html>
<html lang="${esc(ctx.lang)}" dir="${ctx.dir}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title${englishTitle ? inEnglish(ctx) : ''}>${esc(titleText)} – ${FSI}${esc(ctx.portalName)}${PDI}</title>
<link rel="stylesheet" href="${prefix}/assets/gateway.css">
</head>
<body>
<a class="skip" href="#main">${msg(ctx, t('skipLink'))}</a>
<header>
<p class="brand">${ctx.hasLogo ? `<img src="${prefix}/assets/logo" alt="" class="logo"> ` : ''}<bdi>${esc(ctx.portalName)}</bdi></p>
${ctx.signedIn ? securityNav(ctx, opts.settings) : ''}
</header>
<main id="main">
<h1>${opts.heading ?? msg(ctx, title)}</h1>
${ctx.timeLimit ? `<p class="hint"${ctx.timeLimit.asked ? ' role="status"' : ''}>${msg(ctx, timeLeft(ctx, ctx.timeLimit))}</p>` : ''}
${body}
${ctx.timeLimit ? timeWarning(ctx, ctx.timeLimit, opts.typedIn) : ''}
</main>
${scripts}
</body>
</html>`;
}

/**
 * The time left, said at the top of the page: in minutes written out (a screen reader reads "min" as a word of its
 * own), and with a minute or less left, as the warning says it, "less than a minute", not "1 minutes".
 */
function timeLeft(ctx: PageContext, limit: TimeLimit): string {
  const minutes = Math.ceil(limit.secondsLeft / 60);
  const { left, almostUp } = timeMessages(limit);
  return ctx.t(minutes > 1 ? left : almostUp, { minutes });
}

/**
 * The messages of a time limit: the minutes left; a minute or less left (at the top of a page opened then, and the
 * warning before the end); run out. A sign-in's says to ask for more time where the page offers it, or, asked too
 * soon, that more can be given nearer the end; at its recovery codes, that they still work after it.
 */
function timeMessages(limit: TimeLimit): { left: MessageKey; almostUp: MessageKey; over: MessageKey } {
  if (limit.of === 'codes') return { left: 'codesMinutesLeft', almostUp: 'codesAlmostUp', over: 'codesRanOut' };
  return limit.of === 'changes'
    ? { left: 'changesMinutesLeft', almostUp: 'changesAlmostUp', over: 'changesRanOut' }
    : { left: limit.asked === 'same' ? 'minutesLeftSame' : 'minutesLeft', almostUp: limit.moreTime ? 'timeAlmostUp' : 'timeAlmostUpNoMore', over: 'timeRanOut' };
}

/**
 * The link to the sign-in settings, in a <nav> named by the link's text. Where that is English, the <nav> is marked
 * so, not the link's text: the label is an attribute, which has its element's language, and the <nav> holds nothing
 * but that same text. On the settings themselves, the link says it is the current page.
 */
function securityNav(ctx: PageContext, current = false): string {
  const label = ctx.t('securityLink');
  return `<nav aria-label="${esc(label)}"${ctx.english(label) ? inEnglish(ctx) : ''}><a href="${ctx.prefix}/security"${current ? ' aria-current="page"' : ''}>${esc(label)}</a></nav>`;
}

/**
 * The warning the script shows (an alert) a minute before the sign-in's time runs out, also to someone who has read
 * past the time said at the top, or is typing (WCAG 2.2.1): the page is not drawn again by itself. Where it can give
 * more, it says to ask, and the button follows it: after the page's own form, so that that button comes first. A
 * page opened with a minute or less left says so at the top, and warns no more. When the time has run out, the same
 * alert says so (`over`), and the button goes. The security page's time for changes is warned of alike: it says that
 * a change sent after it asks for a step-up first, which comes back to it with what was typed.
 */
function timeWarning(ctx: PageContext, limit: TimeLimit, typedIn?: string): string {
  const { t } = ctx;
  const { almostUp, over } = timeMessages(limit);
  const warning = `<p class="notice time-warning" role="alert" data-seconds-left="${limit.secondsLeft}"${scriptText(ctx, 'warning', t(almostUp))}${scriptText(ctx, 'over', t(over))} hidden></p>`;
  if (!limit.moreTime) return warning;
  const button = (attrs: string) => `<button type="submit"${attrs} class="secondary">${msg(ctx, t('moreTime'))}</button>`;
  // On a page with a code to type, a button of its form (by the form attribute, where it stands: after the form's own
  // button, which Enter in the field still sends): what was typed goes along, and the page comes back with it (also
  // without JavaScript), not emptied (a half-typed recovery code lost). Elsewhere, a form of its own, which a field in
  // no form of the page joins, for the same reason (see passkeyButton).
  return typedIn
    ? `${warning}\n<div class="more-time">${button(` form="${typedIn}" formaction="${ctx.prefix}/more-time" formnovalidate name="back" value="${esc(limit.moreTime.back)}"`)}</div>`
    : `${warning}\n<form method="post" action="${ctx.prefix}/more-time" class="more-time" id="${MORE_TIME_FORM}">${hidden('csrf', limit.moreTime.csrf)}${hidden('back', limit.moreTime.back)}${button('')}</form>`;
}

/** An error tied to its field: announced, described-by and aria-invalid (WCAG 3.3.1, 4.1.3). */
function errorBlock(ctx: PageContext, id: string, error: string | undefined): string {
  return error ? `<p id="${id}" class="error" role="alert">${msg(ctx, error)}</p>` : '';
}

/** The id of a page's form with a field for a code (one a page). */
const CODE_FORM = 'code-form';
/** The id of a page's own "I need more time" form (see timeWarning). */
const MORE_TIME_FORM = 'more-time';

function hidden(name: string, value: string | undefined): string {
  return value === undefined ? '' : `<input type="hidden" name="${name}" value="${esc(value)}">`;
}

interface FieldOpts {
  id: string;
  name: string;
  label: string;
  hint?: string;
  error?: string;
  /** otp: a 6-digit code; digits: a longer one (8-digit enrolment codes); code: letters and digits from paper. */
  kind: 'otp' | 'digits' | 'code' | 'text';
  value?: string;
  autofocus?: boolean;
  /** The id of the form the field belongs to, where it stands in none. */
  form?: string;
}

function field(ctx: PageContext, o: FieldOpts): string {
  // The error first: a screen reader reads the descriptions in this order, and what went wrong comes before the hint.
  const describedBy = [o.error ? `${o.id}-error` : '', o.hint ? `${o.id}-hint` : ''].filter(Boolean).join(' ');
  // Room for the separators people type (a space, or "1234-5678"), never fewer than the code's own characters. A code
  // is left to right also on a page that is not: there, "123 456" would show as "456 123".
  const attrs =
    o.kind === 'otp' || o.kind === 'digits'
      ? ` class="code" dir="ltr" inputmode="numeric" pattern="[0-9 -]*" maxlength="${o.kind === 'otp' ? 7 : 10}" autocomplete="one-time-code" spellcheck="false"`
      : o.kind === 'code'
        ? // Letters from paper: not a code a phone or password manager could offer; shown whole, to check against the paper.
          ' class="code letters" dir="ltr" maxlength="24" autocapitalize="characters" autocomplete="off" autocorrect="off" spellcheck="false"'
        : ' maxlength="60" autocomplete="off"';
  return `<label for="${o.id}">${msg(ctx, o.label)}</label>
${o.hint ? `<p id="${o.id}-hint" class="hint">${msg(ctx, o.hint)}</p>` : ''}
${errorBlock(ctx, `${o.id}-error`, o.error)}
<input type="text" id="${o.id}" name="${o.name}"${o.form ? ` form="${o.form}"` : ''}${o.kind === 'text' ? '' : ' required'}${o.autofocus ? ' autofocus' : ''}${attrs}${o.value ? ` value="${esc(o.value)}"` : ''}${describedBy ? ` aria-describedby="${describedBy}"` : ''}${o.error ? ' aria-invalid="true"' : ''}>`;
}

/**
 * `withoutJs`: what the page says a browser without JavaScript can do instead (an app form is on the page by default).
 * `typed`: the name typed before more time was asked for, in its field again, which takes focus. The name field is in
 * no form (the script sends the passkey): on a page that offers more time, it is a field of that form, and goes along.
 */
function passkeyButton(ctx: PageContext, a: PasskeyAction, { withoutJs = 'jsNeeded', typed }: { withoutJs?: MessageKey; typed?: string } = {}): string {
  const { t } = ctx;
  return `<div class="passkey" data-ceremony="${a.ceremony}" data-options="${esc(a.optionsUrl)}" data-finish="${esc(a.finishUrl)}" data-csrf="${esc(a.csrf)}"${a.page ? ` data-page="${esc(a.page)}"` : ''}${a.keep ? ` data-keep="${esc(a.keep)}"` : ''}${scriptText(ctx, 'failed', t('passkeyFailed'))}${scriptText(ctx, 'cancelled', t('passkeyCancelled'))}${scriptText(ctx, 'already', t('passkeyAlreadyThere'))}${scriptText(ctx, 'unsupported', t('passkeyUnsupported'))}>
${a.nameField ? field(ctx, { id: 'passkey-name', name: 'name', label: t('factorNameLabel'), hint: t('factorNameHint'), kind: 'text', value: typed ?? a.name ?? t('passkeyDefaultName'), autofocus: typed !== undefined, ...(ctx.timeLimit?.moreTime ? { form: MORE_TIME_FORM } : {}) }) : ''}
<button type="button" class="passkey-start" disabled>${msg(ctx, t(a.label))}</button>
<p class="passkey-status error" role="alert" hidden></p>
<noscript><p class="hint">${msg(ctx, t(withoutJs))}</p></noscript>
</div>`;
}

/**
 * `submit`: the button's text, or its HTML (a message with a name, from `named`). `secondary`: a button beside the
 * page's main one, drawn as the lesser. `id`: the form's, for a button outside it (see timeWarning). `describedBy`: the
 * id of what the button does besides what it says (a warning), for a screen reader to read with it.
 */
function form(ctx: PageContext, action: string, csrf: string, inner: string, submit: string | { html: string }, { secondary = false, id, describedBy }: { secondary?: boolean; id?: string; describedBy?: string } = {}): string {
  return `<form method="post" action="${ctx.prefix}${action}" novalidate${id ? ` id="${id}"` : ''}>
${hidden('csrf', csrf)}
${inner}
<button type="submit"${secondary ? ' class="secondary"' : ''}${describedBy ? ` aria-describedby="${describedBy}"` : ''}>${typeof submit === 'string' ? msg(ctx, submit) : submit.html}</button>
</form>`;
}

/**
 * `typed`: the code sent, shown again with its error (a long code from paper, to correct, not to type again), or with
 * more time (see timeWarning); its field takes focus. A code
 * sent: its field comes first, and "Send a new code" after it, as the lesser button: a tap on it replaces the code on
 * its way, which would then not work.
 */
export function proofPage(ctx: PageContext, v: { csrf: string; mode: 'invite' | 'webhook'; sent?: { minutes: number }; error?: string; typed?: string; missing?: boolean }): string {
  const { t } = ctx;
  const intro = v.mode === 'invite' ? t('proofIntroInvite') : t('proofIntroWebhook');
  const sent = v.mode === 'webhook' && v.sent ? `<p role="status">${msg(ctx, t('proofSent', { minutes: v.sent.minutes }))}</p>\n` : '';
  const send = v.mode === 'webhook' ? form(ctx, '/enrol/proof/send', v.csrf, '', v.sent ? t('proofResend') : t('proofSend'), { secondary: v.sent !== undefined }) : '';
  const entry =
    v.mode === 'invite' || v.sent
      ? form(
          ctx,
          '/enrol/proof',
          v.csrf,
          field(ctx, {
            id: 'proof',
            name: 'code',
            label: t('proofLabel'),
            hint: v.mode === 'invite' ? t('proofHintInvite') : t('proofHintWebhook'),
            error: v.error,
            kind: v.mode === 'invite' ? 'code' : 'digits',
            value: v.typed,
            // Only to correct a mistake, or to go on typing: arriving, a screen reader starts at the top, with the instructions.
            autofocus: v.error !== undefined || v.typed !== undefined,
          }),
          t('proofSubmit'),
          { id: CODE_FORM },
        )
      : '';
  return layout(
    ctx,
    t('proofTitle'),
    `<p>${msg(ctx, intro)}</p>
${v.mode === 'invite' ? `<p class="hint">${msg(ctx, t('proofMissing'))}</p>` : ''}
${sent}${entry}
${send}`,
    { error: v.error !== undefined, ...(entry ? { typedIn: CODE_FORM } : {}) },
  );
}

/** `typed`: the passkey's name typed before more time was asked for (see passkeyButton). */
export function choosePage(ctx: PageContext, v: { csrf: string; passkey: PasskeyAction; typed?: string }): string {
  const { t } = ctx;
  return layout(
    ctx,
    t('chooseTitle'),
    `<p>${msg(ctx, t('chooseIntro'))}</p>
<section aria-labelledby="choose-passkey">
<h2 id="choose-passkey">${msg(ctx, t('choosePasskey'))}</h2>
<p>${msg(ctx, t('choosePasskeyHint'))}</p>
${passkeyButton(ctx, v.passkey, { typed: v.typed })}
</section>
<section aria-labelledby="choose-totp">
<h2 id="choose-totp">${msg(ctx, t('chooseTotp'))}</h2>
<p>${msg(ctx, t('chooseTotpHint'))}</p>
<p><a class="button" href="${ctx.prefix}/enrol/totp">${msg(ctx, t('chooseTotpStart'))}</a></p>
</section>`,
    { scripts: 'passkeys' },
  );
}

/**
 * The code field takes focus only to correct a mistake, or to finish a set-up sent after the security page's time for
 * changes (`kept`: back from its step-up, with the name typed, which the page says; `new`: the set-up had run out, and
 * the key shown is new, to add to the app first), or to go on typing the code after more time (`typed`): arriving, the QR code and the key
 * come first, uncovered by a keyboard. On the phone that holds the app, a QR code on its own screen cannot be scanned:
 * the key is also an otpauth link, a tap on which adds it, and with the script, a Copy button (see copyKey).
 */
export function totpSetupPage(ctx: PageContext, v: { action: string; csrf: string; qrSvg: string; uri: string; groupedSecret: string; error?: string; name?: string; nameField: boolean; kept?: 'same' | 'new'; typed?: string }): string {
  const { t } = ctx;
  return layout(
    ctx,
    t('enrolTitle'),
    `${v.kept ? `<p class="notice" role="status">${msg(ctx, t(v.kept === 'new' ? 'securityKeptAppNewKey' : 'securityKeptApp'))}</p>\n` : ''}<p>${msg(ctx, t('enrolIntro'))}</p>
${qrCode(ctx, v.qrSvg)}
<p>${msg(ctx, t('enrolKeyIntro'))}</p>
${copyKey(ctx, v.groupedSecret)}
<p><a href="${esc(v.uri)}">${msg(ctx, t('enrolOpenApp'))}</a></p>
${form(
  ctx,
  v.action,
  v.csrf,
  `${v.nameField ? field(ctx, { id: 'name', name: 'name', label: t('factorNameLabel'), hint: t('factorNameHint'), kind: 'text', value: v.name ?? t('totpDefaultName') }) : ''}
${field(ctx, { id: 'code', name: 'code', label: t('enrolCodeLabel'), hint: t('codeHint'), error: v.error, kind: 'otp', value: v.typed, autofocus: v.error !== undefined || v.kept !== undefined || v.typed !== undefined })}`,
  t('enrolSubmit'),
  { id: CODE_FORM },
)}`,
    { error: v.error !== undefined, scripts: 'page', typedIn: CODE_FORM },
  );
}

/**
 * The key to type into the app, in groups of four to read, and a Copy button, which the script shows where the browser
 * gives the page the clipboard (as the recovery codes' Copy). It copies the key without the spaces: every app takes it
 * so, also one that would not take them.
 */
function copyKey(ctx: PageContext, groupedSecret: string): string {
  const { t } = ctx;
  return `<div class="copy-key"${scriptText(ctx, 'copied', t('enrolKeyCopied'))}${scriptText(ctx, 'copy-failed', t('enrolKeyCopyFailed'))}>
<p class="key" dir="ltr" id="secret">${esc(groupedSecret)}</p>
<button type="button" class="secondary" hidden>${msg(ctx, t('enrolCopyKey'))}</button>
<p class="hint copy-status" role="status"></p>
</div>`;
}

/**
 * The QR code, an image named by its aria-label. Its label in English is marked so on the image itself, which holds no
 * text of its own to be covered by it. With no dir: the image has no text to lay out, and dir would move it to the
 * left of a right-to-left page.
 */
function qrCode(ctx: PageContext, svg: string): string {
  const label = ctx.t('enrolQrAlt');
  return `<div class="qr" role="img" aria-label="${esc(label)}"${ctx.english(label) ? ' lang="en"' : ''}>${svg}</div>`;
}

/**
 * The recovery codes, shown once. The box is checked by the browser (no `novalidate`, unlike the other forms): sent
 * unticked, the answer could not show the codes again. The browser takes a box that is required and not yet ticked
 * for invalid, and a screen reader said "invalid" of it on arrival: it is marked invalid only where the page answers
 * one sent unticked (the browser says what is missing when its button is pressed). Sent unticked, the page says what
 * to do if they were not saved: on the sign-in settings of someone signed in (new codes made there), the settings
 * themselves; at enrolment, there once signed in. Codes shown have no link to the settings, also for someone signed
 * in: it would lead away from them, and they cannot be shown again.
 */
export function recoveryCodesPage(ctx: PageContext, v: { codes: string[]; csrf: string; action: string; error?: string }): string {
  const { t } = ctx;
  return layout(
    v.codes.length ? { ...ctx, signedIn: false } : ctx,
    t('recoveryTitle'),
    `${
      v.codes.length
        ? `<p>${msg(ctx, t('recoveryIntro'))}</p>
<ol class="codes" dir="ltr" id="recovery-codes">${v.codes.map((c) => `<li>${esc(c)}</li>`).join('')}</ol>
${saveCodes(ctx, v.codes)}`
        : `<p>${msg(ctx, t(ctx.signedIn ? 'recoveryShownOnceSignedIn' : 'recoveryShownOnce'))}</p>`
    }
<form method="post" action="${ctx.prefix}${v.action}">
${hidden('csrf', v.csrf)}
${errorBlock(ctx, 'ack-error', v.error)}
<p class="ack"><input type="checkbox" id="ack" name="saved" value="yes" required${v.error ? ' autofocus aria-invalid="true" aria-describedby="ack-error"' : ' aria-invalid="false"'}><label for="ack">${msg(ctx, t('recoveryAck'))}</label></p>
<button type="submit">${msg(ctx, t('continue'))}</button>
</form>`,
    { error: v.error !== undefined, scripts: v.codes.length ? 'page' : undefined },
  );
}

/**
 * Ways to keep the codes: a text file to download (a link: it works without JavaScript), and with the script, Print
 * (the page prints only the portal's name and the codes) and Copy (to paste into a password manager). The script
 * shows a button only where the browser can do it.
 */
function saveCodes(ctx: PageContext, codes: string[]): string {
  const { t } = ctx;
  const file = `${t('recoveryFileIntro', { portal: ctx.portalName })}\n\n${codes.join('\n')}\n`;
  return `<div class="save-codes"${scriptText(ctx, 'copied', t('recoveryCopied'))}${scriptText(ctx, 'copy-failed', t('recoveryCopyFailed'))}>
<p><a href="data:text/plain;charset=utf-8,${esc(encodeURIComponent(file))}" download="recovery-codes.txt">${msg(ctx, t('recoveryDownload'))}</a></p>
<button type="button" class="secondary" data-save="print" hidden>${msg(ctx, t('recoveryPrint'))}</button>
<button type="button" class="secondary" data-save="copy" hidden>${msg(ctx, t('recoveryCopy'))}</button>
<p class="hint save-status" role="status"></p>
</div>`;
}

/**
 * Signing in or stepping up: a passkey button and/or the TOTP form, whichever the user has. `typed`: a code typed
 * before more time was asked for, in its field again, which takes focus.
 */
export function verifyPage(
  ctx: PageContext,
  v: { title: MessageKey; intro?: MessageKey; action: string; csrf: string; totp: boolean; passkey?: PasskeyAction; to?: string; factors?: string; error?: string; recoveryLink: boolean; note?: MessageKey; recoverySignOut?: boolean; submit?: MessageKey; typed?: string },
): string {
  const { t } = ctx;
  const totpForm = v.totp
    ? `${v.passkey ? `<h2>${msg(ctx, t('verifyOr'))}</h2>` : `<p>${msg(ctx, t('verifyIntro'))}</p>`}
${form(ctx, v.action, v.csrf, `${hidden('to', v.to)}${hidden('factors', v.factors)}
${field(ctx, { id: 'code', name: 'code', label: t('verifyCodeLabel'), hint: t('codeHint'), error: v.error, kind: 'otp', value: v.typed, autofocus: v.error !== undefined || v.typed !== undefined })}`, t(v.submit ?? 'verifySubmit'), { id: CODE_FORM })}`
    : '';
  return layout(
    ctx,
    t(v.title),
    `${v.intro ? `<p>${msg(ctx, t(v.intro))}</p>` : ''}
${v.note ? `<p class="notice" role="status">${msg(ctx, t(v.note))}</p>` : ''}
${v.passkey ? passkeyButton(ctx, v.passkey, { withoutJs: v.totp ? 'jsNeeded' : v.recoveryLink ? 'jsNeededOrRecovery' : 'jsNeededOnly' }) : ''}
${totpForm}
${v.recoveryLink ? `<p><a href="${ctx.prefix}/recovery">${msg(ctx, t('useRecovery'))}</a></p>` : ''}
${v.recoverySignOut ? `<p>${msg(ctx, t('stepUpRecovery'))} <a href="${ctx.prefix}/logout">${msg(ctx, t('signOutLink'))}</a></p>` : ''}`,
    { scripts: v.passkey ? 'passkeys' : undefined, error: v.error !== undefined, ...(v.totp ? { typedIn: CODE_FORM } : {}) },
  );
}

/** `typed`: as for proofPage. */
export function recoveryPage(ctx: PageContext, v: { csrf: string; error?: string; typed?: string }): string {
  const { t } = ctx;
  return layout(
    ctx,
    t('recoveryCodeTitle'),
    `${form(ctx, '/recovery', v.csrf, field(ctx, { id: 'code', name: 'code', label: t('recoveryCodeLabel'), hint: t('recoveryCodeHint'), error: v.error, kind: 'code', value: v.typed, autofocus: v.error !== undefined || v.typed !== undefined }), t('verifySubmit'), { id: CODE_FORM })}
<p><a href="${ctx.prefix}/verify">${msg(ctx, t('useOtherWays'))}</a></p>`,
    { error: v.error !== undefined, typedIn: CODE_FORM },
  );
}

/** `kept`: opened again with the name typed (after a step-up the security page's time for changes asked for), which it says. */
export function passkeySetupPage(ctx: PageContext, v: { passkey: PasskeyAction; otherWay?: string; kept?: boolean }): string {
  const { t } = ctx;
  return layout(
    ctx,
    t('passkeyTitle'),
    `${v.kept ? `<p class="notice" role="status">${msg(ctx, t('securityKept'))}</p>\n` : ''}<p>${msg(ctx, t('passkeyIntro'))}</p>
${passkeyButton(ctx, v.passkey)}
${v.otherWay ? `<p><a href="${ctx.prefix}${v.otherWay}">${msg(ctx, t('otherWay'))}</a></p>` : ''}`,
    { scripts: 'passkeys' },
  );
}

export interface FactorView {
  id: string;
  /** webauthn: a passkey that can be synced; key-without-proof: one on one device that does not count as such (withPasskey). */
  kind: 'totp' | 'webauthn' | 'device-bound-passkey' | 'key-without-proof';
  name: string;
  addedAt: number;
  lastUsedAt?: number;
  /** A passkey a copy of which answered: it opens nothing until removed (and a key registered again). */
  suspect?: boolean;
  /** Of a kind turned off for the person after too many failures: it opens nothing until one of its kind is added. */
  disabled?: boolean;
  /** Another factor that works is left without it. */
  removable: boolean;
}

/**
 * `kept`: a new name sent for a factor after the time for changes, back from its step-up: in its field, which takes
 * focus (the notice says it is not saved yet).
 */
export function securityPage(ctx: PageContext, v: { csrf: string; factors: FactorView[]; recoveryLeft: number; recoveryDisabled?: boolean; recoverySet: string; notice?: MessageKey; kept?: { factor: string; name: string } }): string {
  const { t } = ctx;
  // A message with a {date}, the date in a <time>, which is kept on one line (a phone broke "2026-12-06" at a dash).
  const dated = (key: MessageKey, ms: number) => {
    const day = new Date(ms).toISOString().slice(0, 10);
    return msg(ctx, t(key)).replaceAll('{date}', `<time datetime="${day}">${day}</time>`);
  };
  // A factor left with its default name (an app called "Authenticator app") is not named twice.
  const kindAfter = (f: FactorView) => (t(`securityKind.${f.kind}`) === f.name ? '' : ` – ${msg(ctx, t(`securityKind.${f.kind}`))}`);
  const items = v.factors
    .map(
      (f) => `<li>
<p><strong><bdi>${esc(f.name)}</bdi></strong>${kindAfter(f)}<br>
<span class="hint">${dated('securityAdded', f.addedAt)}, ${f.lastUsedAt ? dated('securityLastUsed', f.lastUsedAt) : msg(ctx, t('securityNeverUsed'))}</span></p>${f.suspect ? `\n<p class="error">${msg(ctx, t('securitySuspect'))}</p>` : ''}${f.disabled ? `\n<p class="error">${msg(ctx, t(f.kind === 'totp' ? 'securityDisabledApp' : 'securityDisabledPasskey'))}</p>` : ''}
<form method="post" action="${ctx.prefix}/security/rename" class="inline">
${hidden('csrf', v.csrf)}${hidden('factor', f.id)}
<label for="rename-${esc(f.id)}">${named(ctx, 'securityRenameLabel', f.name).html}</label>
<input type="text" id="rename-${esc(f.id)}" name="name" maxlength="60" required autocomplete="off"${v.kept?.factor === f.id ? ` value="${esc(v.kept.name)}" autofocus` : ''}>
<button type="submit">${named(ctx, 'securityRename', f.name).html}</button>
</form>
${
  !f.removable
    ? `<p class="hint">${msg(ctx, t(v.factors.length > 1 ? 'securityLastWorking' : 'securityLastFactor'))}</p>`
    : `<form method="get" action="${ctx.prefix}/security/remove">${hidden('factor', f.id)}<button type="submit" class="secondary">${named(ctx, 'securityRemove', f.name).html}</button></form>`
}
</li>`,
    )
    .join('\n');
  return layout(
    ctx,
    t('securityTitle'),
    `${v.notice ? `<p class="notice" role="status">${msg(ctx, t(v.notice))}</p>` : ''}
<p>${msg(ctx, t('securityIntro'))}</p>
<h2>${msg(ctx, t('securityFactors'))}</h2>
<ul class="factors">${items}</ul>
<p><a class="button" href="${ctx.prefix}/security/totp">${msg(ctx, t('securityAddTotp'))}</a>
<a class="button" href="${ctx.prefix}/security/passkey">${msg(ctx, t('securityAddPasskey'))}</a></p>
<h2>${msg(ctx, t('securityRecovery'))}</h2>
<p>${msg(ctx, t('securityRecoveryLeft', { left: v.recoveryLeft }))}</p>${v.recoveryDisabled ? `\n<p class="error">${msg(ctx, t('securityDisabledRecovery'))}</p>` : ''}
<p class="hint" id="recovery-new-hint">${msg(ctx, t('securityRecoveryNewHint'))}</p>
<form method="get" action="${ctx.prefix}/security/recovery-codes">${hidden('replaces', v.recoverySet)}<button type="submit" aria-describedby="recovery-new-hint">${msg(ctx, t('securityRecoveryNew'))}</button></form>
<h2>${msg(ctx, t('securitySessions'))}</h2>
<p>${msg(ctx, t('securitySessionsHint'))}</p>
${form(ctx, '/security/sign-out-others', v.csrf, '', t('securitySignOutOthers'))}
<p><a href="/" referrerpolicy="no-referrer">${msg(ctx, t('backToPortal'))}</a> <span aria-hidden="true">·</span> <a href="${ctx.prefix}/logout">${msg(ctx, t('signOutLink'))}</a></p>`,
    { settings: true },
  );
}

/** Removing a factor, confirmed: a tap that missed its button on a phone takes nothing away. */
export function removeFactorPage(ctx: PageContext, v: { csrf: string; factor: { id: string; name: string } }): string {
  const { t } = ctx;
  const title = named(ctx, 'securityRemoveTitle', v.factor.name);
  return layout(
    ctx,
    title.text,
    `<p>${msg(ctx, t('securityRemoveConfirm'))}</p>
${form(ctx, '/security/remove', v.csrf, hidden('factor', v.factor.id), named(ctx, 'securityRemove', v.factor.name))}
<p><a href="${ctx.prefix}/security">${msg(ctx, t('cancel'))}</a></p>`,
    { heading: title.html },
  );
}

/**
 * New recovery codes, confirmed: a tap that missed its button leaves the codes on paper working. The warning that the
 * old ones stop working is the button's description too. `replaces`: the set the settings page offered to replace.
 */
export function newRecoveryCodesPage(ctx: PageContext, v: { csrf: string; replaces: string }): string {
  const { t } = ctx;
  return layout(
    ctx,
    t('securityRecoveryNewTitle'),
    `<p id="recovery-new-warning">${msg(ctx, t('securityRecoveryNewHint'))}</p>
${form(ctx, '/security/recovery-codes', v.csrf, hidden('replaces', v.replaces), t('securityRecoveryNew'), { describedBy: 'recovery-new-warning' })}
<p><a href="${ctx.prefix}/security">${msg(ctx, t('cancel'))}</a></p>`,
  );
}

/** Signing out, confirmed: Cancel leads back to the portal. */
export function logoutPage(ctx: PageContext, v: { csrf: string }): string {
  const { t } = ctx;
  return layout(ctx, t('logoutTitle'), `<p>${msg(ctx, t('logoutIntro'))}</p>
${form(ctx, '/logout', v.csrf, '', t('logoutSubmit'))}
<p><a href="/">${msg(ctx, t('cancel'))}</a></p>`);
}

/**
 * A page that says one thing; an error page's title and heading are the error's own message, so no `message` repeats it.
 * `message`: text of the page as it comes (a step-up done), no alert: a screen reader reads it after the heading, not
 * as a warning.
 */
export function messagePage(ctx: PageContext, v: { title: MessageKey; message?: string; reference?: string; action?: { href: string; label: MessageKey } }): string {
  const { t } = ctx;
  return layout(
    ctx,
    t(v.title),
    `${v.message ? `<p>${msg(ctx, v.message)}</p>` : ''}
${v.action ? `<p><a href="${esc(v.action.href)}">${msg(ctx, t(v.action.label))}</a></p>` : ''}
${v.reference ? `<p class="hint">${msg(ctx, t('reference'))}: ${esc(v.reference)}</p>` : ''}`,
  );
}
