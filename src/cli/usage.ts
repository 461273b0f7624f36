// A command used the wrong way: main prints the message and the usage text, and exits 2.
export class UsageError extends Error {}
