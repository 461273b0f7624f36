// Preloaded into the demo (node --import) by its test: as the demo makes its audit directory DIR in the shared
// temporary directory, a symbolic link to PLANT_TARGET is put at DIR + PLANT_SUFFIX (.env, .public-key.pem), where the
// demo writes beside it, as another user of the machine who saw DIR appear could put one before the demo writes there.
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const mkdtempSync = fs.mkdtempSync;
fs.mkdtempSync = ((prefix: string, options?: fs.EncodingOption) => {
  const dir = mkdtempSync(prefix, options);
  if (prefix.includes('mfa-gateway-demo-audit-')) fs.symlinkSync(process.env.PLANT_TARGET!, `${dir}${process.env.PLANT_SUFFIX}`);
  return dir;
}) as typeof fs.mkdtempSync;
// The modules that import mkdtempSync by name see this one.
syncBuiltinESMExports();
