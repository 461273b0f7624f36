// Passkeys on the gateway's pages: ask the gateway for options, run the browser ceremony, send the result back. And
// Print and Copy for the recovery codes, Copy for an authenticator app's key, and the warning that a sign-in's time
// (or the security page's time for changes) is nearly up. Everything else on these pages works without JavaScript.
(function () {
  'use strict';
  var wa = window.SimpleWebAuthnBrowser;
  // Refusals after which the page can no longer do what it offers (the sign-in ran out of time, the session ended,
  // the settings need a step-up first, passkeys were turned off after too many failures, the page's form token was
  // replaced by a step-up in another tab): the button would only fail again, with no link on. Opened again, the page
  // offers what still works (a kind turned off is not offered, and it says so), with the current token.
  var PAGE_OVER = ['GW_ERR_LOGIN_EXPIRED', 'GW_ERR_SIGN_IN_REQUIRED', 'GW_ERR_STEP_UP_REQUIRED', 'GW_ERR_TOO_MANY_ATTEMPTS', 'GW_ERR_FACTOR_LOCKED', 'GW_ERR_CSRF'];
  function post(url, csrf, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', accept: 'application/json', 'x-csrf-token': csrf },
      body: JSON.stringify(body),
    }).then(function (res) {
      return res.json().then(function (json) {
        // The message's language is the answer's (see show).
        if (!res.ok) throw Object.assign(new Error(json.message || 'failed'), { serverMessage: json.message, serverLang: res.headers.get('content-language'), serverCode: json.error });
        return json;
      });
    });
  }
  // A message shown in English on a page in another language (its catalogue leaves it out) is marked so, as the pages
  // mark such text (WCAG 3.1.2): in a span with lang="en", read by a screen reader in English, and on a right-to-left
  // page laid out left to right. `lang`: the message's language, none (or the page's own) for the page's; English is
  // the only other language a message can be in.
  function show(element, text, lang) {
    if (!lang || lang === document.documentElement.lang) {
      element.textContent = text;
      return;
    }
    var span = document.createElement('span');
    span.lang = lang;
    if (document.documentElement.dir === 'rtl') span.dir = 'ltr';
    span.textContent = text;
    element.replaceChildren(span);
  }
  // The message the page gave the script as data-<name>, with its language (data-<name>-lang).
  function showGiven(element, box, name) {
    show(element, box.dataset[name], box.dataset[name + 'Lang']);
  }
  function setUp(box) {
    var button = box.querySelector('.passkey-start');
    var status = box.querySelector('.passkey-status');
    var nameInput = box.querySelector('input[name="name"]');
    // The passkey is sent by the script: Enter in its name field starts it, as it would send a form, and does nothing
    // while it is under way or where it cannot be; never what the field's form would do ("I need more time", which
    // the field joins to keep the name: see passkeyButton).
    if (nameInput) {
      nameInput.addEventListener('keydown', function (event) {
        if (event.key !== 'Enter') return;
        event.preventDefault();
        if (!button.disabled) button.click();
      });
    }
    // A browser without passkeys: say so (and that other ways work), not a button that stays off unexplained.
    if (!wa || !wa.browserSupportsWebAuthn()) {
      showGiven(status, box, 'unsupported');
      status.hidden = false;
      return;
    }
    button.disabled = false;
    button.addEventListener('click', function () {
      button.disabled = true;
      status.hidden = true;
      var csrf = box.dataset.csrf;
      post(box.dataset.options, csrf, {})
        .then(function (options) {
          return box.dataset.ceremony === 'register'
            ? wa.startRegistration({ optionsJSON: options })
            : wa.startAuthentication({ optionsJSON: options });
        })
        .then(function (credential) {
          return post(box.dataset.finish, csrf, { credential: credential, name: nameInput ? nameInput.value : undefined });
        })
        .then(function (done) {
          window.location.assign(done.next);
        })
        .catch(function (err) {
          // The page opened again (as a GET, also after a form's answer): the gateway answers it with what happened
          // and the way on (sign in again, the step-up), as it does for the forms. The page's own address when it
          // names none (a step-up answering a wrong code names its query, which the form's address lacks). Without its
          // fragment: the same address with one (#main, after the skip link) would only scroll, and leave the button off.
          // With the name typed, where the page opened again reads it back (its box gives the mark it takes it with),
          // when it is opened again for a step-up, which comes back to it; not when the session has ended.
          if (err && PAGE_OVER.indexOf(err.serverCode) !== -1) {
            var again = new URL(box.dataset.page || window.location.href, window.location.href);
            again.hash = '';
            if (nameInput && box.dataset.keep && err.serverCode === 'GW_ERR_STEP_UP_REQUIRED') {
              again.searchParams.set('name', nameInput.value);
              again.searchParams.set('kept', box.dataset.keep);
            }
            window.location.assign(again.href);
            return;
          }
          var name = err && err.name;
          // InvalidStateError on registering: this authenticator already holds one of the account's passkeys (the
          // options list them to exclude), so trying again on it can never work; the generic message would say to.
          if (err && err.serverMessage) show(status, err.serverMessage, err.serverLang);
          else showGiven(status, box, name === 'NotAllowedError' ? 'cancelled' : name === 'InvalidStateError' && box.dataset.ceremony === 'register' ? 'already' : 'failed');
          status.hidden = false;
          button.disabled = false;
          button.focus();
        });
    });
  }
  // Each button is shown only where the browser can do what it says: Copy needs the clipboard, which browsers give
  // to secure contexts only (a portal on plain http: no button; what the page offers besides remains). `text`: what
  // to copy, read when the button is pressed.
  function offerCopy(box, button, status, text) {
    if (!navigator.clipboard || !window.isSecureContext) return;
    button.hidden = false;
    button.addEventListener('click', function () {
      // Said in the status line (a live region): a screen reader announces it, the button keeps focus.
      navigator.clipboard.writeText(text()).then(
        function () {
          showGiven(status, box, 'copied');
        },
        function () {
          showGiven(status, box, 'copyFailed');
        },
      );
    });
  }
  // The recovery codes: Print, and Copy (one a line). Without either, the download link and writing them down.
  function saveCodes(box) {
    var print = box.querySelector('[data-save="print"]');
    if (typeof window.print === 'function') {
      print.hidden = false;
      print.addEventListener('click', function () {
        window.print();
      });
    }
    offerCopy(box, box.querySelector('[data-save="copy"]'), box.querySelector('.save-status'), function () {
      var codes = Array.prototype.map.call(document.querySelectorAll('#recovery-codes li'), function (li) {
        return li.textContent;
      });
      return codes.join('\n');
    });
  }
  // The authenticator app's key, as shown without the spaces between its groups. Without Copy: the otpauth link, or
  // typing it.
  function copyKey(box) {
    offerCopy(box, box.querySelector('button'), box.querySelector('.copy-status'), function () {
      return box.querySelector('.key').textContent.replace(/\s/g, '');
    });
  }
  // A sign-in in progress (or the security page's time for changes): its warning shown, and so announced (an alert),
  // a minute before its time runs out, and at the end, in the same alert, that it has run out, "I need more time" gone
  // (it could give none). Timed from when the page came, by this device's clock: a timer fires late in a tab in the
  // background (the authenticator app in front of it, a phone asleep), and a page seen again after the end says so,
  // not that a minute is left. A page that came with a minute or less left says so already, and is told only of the
  // end. Focus on the button that goes moves to the alert (not lost to the top of the page).
  function warnOfTime(warning) {
    var end = Date.now() + Number(warning.dataset.secondsLeft) * 1000;
    function show(name) {
      showGiven(warning, warning, name);
      warning.hidden = false;
    }
    if (end - Date.now() > 60000) {
      setTimeout(function () {
        if (Date.now() < end) show('warning');
      }, end - Date.now() - 60000);
    }
    setTimeout(function () {
      show('over');
      var more = document.querySelector('.more-time');
      if (!more) return;
      var hadFocus = more.contains(document.activeElement);
      more.hidden = true;
      if (hadFocus) {
        warning.tabIndex = -1;
        warning.focus();
      }
    }, end - Date.now());
  }
  // A field that takes focus with what was typed in it (the page back after more time, or to correct a mistake): the
  // caret at its end, to go on typing (Chromium puts it at the start, before what was typed).
  function caretAtEnd(field) {
    field.setSelectionRange(field.value.length, field.value.length);
  }
  function start() {
    document.querySelectorAll('input[type="text"][autofocus]').forEach(caretAtEnd);
    document.querySelectorAll('.passkey').forEach(setUp);
    document.querySelectorAll('.save-codes').forEach(saveCodes);
    document.querySelectorAll('.copy-key').forEach(copyKey);
    document.querySelectorAll('.time-warning').forEach(warnOfTime);
  }
  // The pages load this script at the end of <body>; loaded any earlier, it waits for the buttons to exist.
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
