// QR codes drawn by the gateway itself (no external service): an inline SVG for the enrolment page.
import QRCode from 'qrcode';

/**
 * The QR code as an <svg> hidden from assistive technology (and, in old browsers, from Tab): the page puts it in an
 * image of its own, named by its aria-label (see qrCode in the pages), which a screen reader reads; the bare <svg>
 * would be a second, unnamed image inside it.
 */
export async function qrSvg(text: string): Promise<string> {
  const svg = await QRCode.toString(text, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
  return svg.replace(/^<svg /, '<svg aria-hidden="true" focusable="false" ');
}
