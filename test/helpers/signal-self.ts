// Preloaded into a command-line process (node --import) by the tests of a stop asked for while it starts: the process
// sends itself the signal SIGNAL_SELF at the one point of its start that SIGNAL_SELF_AT names, where no timing from
// outside could land it:
//   lock      just after it takes its audit directory's lock
//   listen:N  as the Nth server of the process begins to listen (listen:1, the first)
//   import:M  as module M is first imported (import:fastify: as the gateway's modules are being loaded)
import fs from 'node:fs';
import { register, syncBuiltinESMExports } from 'node:module';
import net from 'node:net';

const send = () => process.kill(process.pid, process.env.SIGNAL_SELF as NodeJS.Signals);
const at = process.env.SIGNAL_SELF_AT ?? '';

if (at === 'lock') {
  const openSync = fs.openSync;
  fs.openSync = ((path: fs.PathLike, flags?: fs.OpenMode, mode?: fs.Mode) => {
    const fd = openSync(path, flags, mode);
    if (String(path).endsWith('audit.lock') && flags === 'wx') send();
    return fd;
  }) as typeof fs.openSync;
  // The modules that import openSync by name see this one.
  syncBuiltinESMExports();
}

const nth = /^listen:(\d+)$/.exec(at);
if (nth) {
  const listen = net.Server.prototype.listen;
  let n = 0;
  net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
    if (++n === Number(nth[1])) send();
    return listen.apply(this, args as Parameters<typeof listen>);
  } as typeof listen;
}

const imported = /^import:(.+)$/.exec(at);
if (imported) {
  // A module hook (run on a thread of its own): it sends the signal as it resolves M, and goes on loading.
  const hooks = `let sent = false;
export async function resolve(specifier, context, next) {
  if (!sent && specifier === ${JSON.stringify(imported[1])}) {
    sent = true;
    process.kill(${process.pid}, ${JSON.stringify(process.env.SIGNAL_SELF)});
  }
  return next(specifier, context);
}`;
  register(`data:text/javascript,${encodeURIComponent(hooks)}`);
}
