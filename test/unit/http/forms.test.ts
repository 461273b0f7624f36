// The same-origin check of the gateway's forms: Fetch Metadata, then Origin (host and, on https, scheme).
import type { FastifyRequest } from 'fastify';
import t from 'tap';
import { checkSameOrigin } from '../../../src/http/forms.js';

const request = (headers: Record<string, string>, proto: 'http' | 'https' = 'https') => ({ headers: { host: 'gw.example', ...headers }, client: { ip: '192.0.2.1', proto } }) as unknown as FastifyRequest;

t.test('a form sent by the gateway’s own pages passes', async (t) => {
  for (const headers of [{}, { 'sec-fetch-site': 'same-origin' }, { 'sec-fetch-site': 'none' }, { origin: 'https://gw.example' }, { origin: 'https://GW.example:443' }, { referer: 'https://gw.example/_mfa/security' }]) {
    t.doesNotThrow(() => checkSameOrigin(request(headers)), JSON.stringify(headers));
  }
  t.doesNotThrow(() => checkSameOrigin(request({ origin: 'http://gw.example' }, 'http')), 'plain http on a plain-http gateway (the demo)');
  t.doesNotThrow(() => checkSameOrigin(request({ 'sec-fetch-site': 'same-origin', origin: 'null' })), 'a page with Referrer-Policy: no-referrer posting its own form');
});

t.test('a form another site made the browser send is refused', async (t) => {
  for (const headers of [{ 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }, { origin: 'https://evil.example' }, { origin: 'null' }, { origin: 'not a url' }, { origin: 'https://gw.example:8443' }, { origin: 'http://gw.example' }, { referer: 'https://evil.example/page' }]) {
    t.throws(() => checkSameOrigin(request(headers)), { code: 'GW_ERR_CSRF' }, JSON.stringify(headers));
  }
});
