// The gateway's server-rendered pages: plain HTML forms that work without JavaScript, no external assets.
import { messages as m } from './messages.js';

export interface PageContext {
  portalName: string;
  prefix: string;
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function layout(ctx: PageContext, title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} – ${esc(ctx.portalName)}</title>
<link rel="stylesheet" href="${ctx.prefix}/assets/gateway.css">
</head>
<body>
<a class="skip" href="#main">${m.skipLink}</a>
<header>${esc(ctx.portalName)}</header>
<main id="main">
<h1>${esc(title)}</h1>
${body}
</main>
</body>
</html>`;
}

function errorBlock(id: string, error: string | undefined): string {
  return error ? `<p id="${id}" class="error" role="alert">${esc(error)}</p>` : '';
}

function codeField(opts: { name: string; label: string; hint: string; error?: string; numeric: boolean }): string {
  const describedBy = ['code-hint', opts.error ? 'code-error' : ''].filter(Boolean).join(' ');
  const numeric = opts.numeric ? ' inputmode="numeric" pattern="[0-9 ]*" maxlength="7"' : ' maxlength="24" autocapitalize="characters"';
  return `<label for="code">${esc(opts.label)}</label>
<p id="code-hint" class="hint">${esc(opts.hint)}</p>
${errorBlock('code-error', opts.error)}
<input type="text" id="code" name="${opts.name}" autocomplete="one-time-code" spellcheck="false" required autofocus${numeric} aria-describedby="${describedBy}"${opts.error ? ' aria-invalid="true"' : ''}>`;
}

export function enrolPage(ctx: PageContext, v: { qrSvg: string; groupedSecret: string; csrf: string; error?: string }): string {
  return layout(
    ctx,
    m.enrolTitle,
    `<p>${esc(m.enrolIntro)}</p>
<div class="qr" role="img" aria-label="${esc(m.enrolQrAlt)}">${v.qrSvg}</div>
<p>${esc(m.enrolKeyIntro)}</p>
<p class="key" id="secret">${esc(v.groupedSecret)}</p>
<form method="post" action="${ctx.prefix}/enrol">
<input type="hidden" name="csrf" value="${esc(v.csrf)}">
${codeField({ name: 'code', label: m.enrolCodeLabel, hint: m.codeHint, error: v.error, numeric: true })}
<button type="submit">${esc(m.enrolSubmit)}</button>
</form>`,
  );
}

export function recoveryCodesPage(ctx: PageContext, v: { codes: string[]; csrf: string; error?: string }): string {
  return layout(
    ctx,
    m.recoveryTitle,
    `${
      v.codes.length
        ? `<p>${esc(m.recoveryIntro)}</p>
<ol class="codes" id="recovery-codes">${v.codes.map((c) => `<li>${esc(c)}</li>`).join('')}</ol>`
        : `<p>${esc(m.recoveryShownOnce)}</p>`
    }
<form method="post" action="${ctx.prefix}/recovery-codes">
<input type="hidden" name="csrf" value="${esc(v.csrf)}">
${errorBlock('ack-error', v.error)}
<p class="ack"><input type="checkbox" id="ack" name="saved" value="yes" required${v.error ? ' aria-invalid="true" aria-describedby="ack-error"' : ''}><label for="ack">${esc(m.recoveryAck)}</label></p>
<button type="submit">${esc(m.continue)}</button>
</form>`,
  );
}

export function verifyPage(ctx: PageContext, v: { csrf: string; error?: string }): string {
  return layout(
    ctx,
    m.verifyTitle,
    `<p>${esc(m.verifyIntro)}</p>
<form method="post" action="${ctx.prefix}/verify">
<input type="hidden" name="csrf" value="${esc(v.csrf)}">
${codeField({ name: 'code', label: m.verifyCodeLabel, hint: m.codeHint, error: v.error, numeric: true })}
<button type="submit">${esc(m.verifySubmit)}</button>
</form>
<p><a href="${ctx.prefix}/recovery">${esc(m.useRecovery)}</a></p>`,
  );
}

export function recoveryPage(ctx: PageContext, v: { csrf: string; error?: string }): string {
  return layout(
    ctx,
    m.recoveryCodeTitle,
    `<form method="post" action="${ctx.prefix}/recovery">
<input type="hidden" name="csrf" value="${esc(v.csrf)}">
${codeField({ name: 'code', label: m.recoveryCodeLabel, hint: m.recoveryCodeHint, error: v.error, numeric: false })}
<button type="submit">${esc(m.verifySubmit)}</button>
</form>
<p><a href="${ctx.prefix}/verify">${esc(m.useApp)}</a></p>`,
  );
}

export function stepUpPage(ctx: PageContext, v: { csrf: string; to: string | undefined; error?: string; totpAllowed: boolean }): string {
  if (!v.totpAllowed) return layout(ctx, m.stepUpTitle, `<p>${esc(m.stepUpOtherFactor)}</p>`);
  return layout(
    ctx,
    m.stepUpTitle,
    `<p>${esc(m.stepUpIntro)}</p>
<form method="post" action="${ctx.prefix}/step-up">
<input type="hidden" name="csrf" value="${esc(v.csrf)}">
${v.to ? `<input type="hidden" name="to" value="${esc(v.to)}">` : ''}
${codeField({ name: 'code', label: m.verifyCodeLabel, hint: m.codeHint, error: v.error, numeric: true })}
<button type="submit">${esc(m.stepUpSubmit)}</button>
</form>`,
  );
}

export function logoutPage(ctx: PageContext, v: { csrf: string }): string {
  return layout(
    ctx,
    m.logoutTitle,
    `<p>${esc(m.logoutIntro)}</p>
<form method="post" action="${ctx.prefix}/logout">
<input type="hidden" name="csrf" value="${esc(v.csrf)}">
<button type="submit">${esc(m.logoutSubmit)}</button>
</form>`,
  );
}

export function messagePage(ctx: PageContext, v: { title?: string; message: string; reference?: string; action?: { href: string; label: string } }): string {
  return layout(
    ctx,
    v.title ?? m.errorTitle,
    `<p role="alert">${esc(v.message)}</p>
${v.action ? `<p><a href="${esc(v.action.href)}">${esc(v.action.label)}</a></p>` : ''}
${v.reference ? `<p class="hint">${esc(m.reference)}: ${esc(v.reference)}</p>` : ''}`,
  );
}
