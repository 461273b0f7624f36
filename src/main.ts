#!/usr/bin/env node
// The mfa-gateway command line's entry: it only listens for a stop, then loads the rest (commands.ts), which reads argv
// and the environment.
// First: importing it keeps the shape of Node's tick objects, before loading the rest can lose it (runtime.ts).
import './runtime.js';
import { listenForStop } from './stop.js';

// Before the gateway's modules are loaded (about a second): a SIGTERM then stops `serve` cleanly (exit 0) rather than
// being lost (see stop.ts).
listenForStop();
await import('./commands.js');
