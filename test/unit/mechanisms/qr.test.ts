// The QR code drawn for the app set-up page: an image inside the page's own, named one (see qrCode in the pages).
import t from 'tap';
import { qrSvg } from '../../../src/mechanisms/qr.js';

t.test('the drawn QR code is hidden from assistive technology: the named image around it is the one image', async (t) => {
  const svg = await qrSvg('otpauth://totp/Portal:alice?secret=JBSWY3DPEHPK3PXP');
  t.match(svg, /^<svg aria-hidden="true" focusable="false" xmlns="http:\/\/www\.w3\.org\/2000\/svg" viewBox="0 0 \d+ \d+"/, 'no second, unnamed image, and no tab stop');
  t.equal(svg.match(/<svg/g)!.length, 1, 'one svg');
});
