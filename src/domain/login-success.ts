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
  /**
   * Where the Location sends a browser, resolved against the login's URL as a browser resolves it (see
   * followedLocation): a path and query on the portal (`home.jsp` answered to `/portal/login.do` is
   * `/portal/home.jsp`, `http://portal.internal/home` is `/home`), another site's absolute URL; undefined without a
   * Location, or with one it cannot resolve: no location rule holds then.
   */
  location: string | undefined;
  setCookieNames: readonly string[];
  body: string;
}

/** Every configured rule must hold; a rule left out is not checked. */
export function answerMatches(rules: LoginAnswerRules, answer: PortalAnswer): boolean {
  if (rules.status !== undefined && !rules.status.includes(answer.status)) return false;
  if (rules.location !== undefined && (answer.location === undefined || !new RegExp(rules.location).test(answer.location))) return false;
  if (rules.setCookie !== undefined && !answer.setCookieNames.includes(rules.setCookie)) return false;
  if (rules.body !== undefined && !new RegExp(rules.body).test(answer.body)) return false;
  return true;
}
