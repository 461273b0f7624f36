// QR codes drawn by the gateway itself (no external service): an inline SVG for the enrolment page.
import QRCode from 'qrcode';

export function qrSvg(text: string): Promise<string> {
  return QRCode.toString(text, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 });
}
