/** The error taxonomy: every failure mkt reports is one of these. */

/** The user's input is wrong: the message says what and how to fix it; no stack. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  /** 2 for a bad option; 125 for an input mkt cannot boot (a kernel it rejects). */
  constructor(
    message: string,
    readonly exitCode = 2,
  ) {
    super(message);
  }
}

/** An external program failed: its argv, exit status and the tail of its stderr. */
export class ToolError extends Error {
  override readonly name = 'ToolError';
  constructor(
    message: string,
    readonly argv: readonly string[] = [],
    readonly status: number | null = null,
    readonly stderrTail = '',
  ) {
    super(message);
  }
}

/** A bug in mkt. */
export class InternalError extends Error {
  override readonly name = 'InternalError';
}
