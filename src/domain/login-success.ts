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
  setCookieNames: readonly string[];
  body: string;
}

/** Every configured rule must hold; a rule left out is not checked. */
export function answerMatches(rules: LoginAnswerRules, answer: PortalAnswer): boolean {
  if (rules.status !== undefined && !rules.status.includes(answer.status)) return false;
  if (rules.location !== undefined && !(answer.location !== undefined && new RegExp(rules.location).test(answer.location))) return false;
  if (rules.setCookie !== undefined && !answer.setCookieNames.includes(rules.setCookie)) return false;
  if (rules.body !== undefined && !new RegExp(rules.body).test(answer.body)) return false;
  return true;
}
