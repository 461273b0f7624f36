// Decides, from the portal's answer to a login POST, whether the password was accepted (or refused).

/** How one kind of answer looks (portal.login.success, portal.login.failure). */
export interface LoginAnswerRules {
  status?: readonly number[];
  location?: string;
  setCookie?: string;
  body?: string;
}

export interface PortalAnswer {
  status: number;
  location: string | undefined;
  /**
   * The Location as the browser gets it, a URL on the portal's own origin as a path (`http://portal.internal/home` is
   * `/home`): a rule anchored to where a sign-in lands (`^/home`) holds for a portal that builds its redirects from
   * the Host it is sent, too.
   */
  browserLocation?: string | undefined;
  setCookieNames: readonly string[];
  body: string;
}

/** Every configured rule must hold; a rule left out is not checked. */
export function answerMatches(rules: LoginAnswerRules, answer: PortalAnswer): boolean {
  if (rules.status !== undefined && !rules.status.includes(answer.status)) return false;
  if (rules.location !== undefined) {
    const pattern = new RegExp(rules.location);
    if (![answer.location, answer.browserLocation].some((l) => l !== undefined && pattern.test(l))) return false;
  }
  if (rules.setCookie !== undefined && !answer.setCookieNames.includes(rules.setCookie)) return false;
  if (rules.body !== undefined && !new RegExp(rules.body).test(answer.body)) return false;
  return true;
}
