// Actions that end access go on past a step that fails. A full store (Redis at maxmemory with noeviction) refuses
// every write that needs memory, a mark among them, while it still deletes: a session left running because a mark
// before its deletion could not be written is worse than one ended without the mark. Every step is tried, in order,
// and the first failure is thrown once all were.

/** The steps of one action: each is tried, and a failure is kept (the first) instead of stopping the rest. */
export class BestEffort {
  private first: { error: unknown } | undefined;

  /** Whether a step failed. */
  get failed(): boolean {
    return this.first !== undefined;
  }

  /** What the step gave, or undefined when it failed (the failure is kept). */
  async run<T>(step: () => Promise<T>): Promise<T | undefined> {
    try {
      return await step();
    } catch (err) {
      this.first ??= { error: err };
      return undefined;
    }
  }

  /** Throws the first failure, if a step failed. */
  rethrow(): void {
    if (this.first) throw this.first.error;
  }

  /** `done`, when every step succeeded; otherwise throws PartlyDone with it and the first failure. */
  result<T>(done: T): T {
    if (this.first) throw new PartlyDone(done, this.first.error);
    return done;
  }
}

/** An action that failed part-way and went on with the steps it could still do: `done` is what it did. */
export class PartlyDone<T> extends Error {
  constructor(
    readonly done: T,
    override readonly cause: unknown,
  ) {
    super('not every step was carried out', { cause });
  }
}
