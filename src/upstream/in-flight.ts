// Requests waiting for the portal, gateway-wide: beyond the cap they are refused at once instead of piling up (a
// slow portal must not take every socket and all memory with it).
import { GatewayError } from '../errors.js';

export class InFlight {
  private count = 0;

  constructor(readonly max: number) {}

  /** Takes a place or throws GW_ERR_PORTAL_BUSY; call the returned function, once, when the portal has answered. */
  enter(): () => void {
    if (this.count >= this.max) throw new GatewayError('GW_ERR_PORTAL_BUSY', `${this.count} requests in flight`, { retryAfterMs: 1000 });
    this.count++;
    let left = false;
    return () => {
      if (!left) this.count--;
      left = true;
    };
  }
}
