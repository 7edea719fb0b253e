/** Exit codes shared by every command. */
export const ExitCode = {
  ok: 0,
  /** A check ran and found problems (dropped symbols, failed smoke checks, …). */
  checkFailed: 1,
  /** The user gave something wrong: config, flag, file. */
  badInput: 2,
  /** The host lacks something (tool, disk space, Buildroot tree) or a tool failed unexpectedly. */
  hostProblem: 3,
  interrupted: 130,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * The one error type every stage reports. `message` is a single line naming what is wrong;
 * `hint` says what to do about it; `details` (multi-line: logs, lists) is shown after the line.
 */
export class ApplianceError extends Error {
  readonly hint: string | undefined;
  readonly exitCode: ExitCodeValue;
  readonly details: string | undefined;

  constructor(
    message: string,
    options: { hint?: string; exitCode?: ExitCodeValue; details?: string; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ApplianceError';
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? ExitCode.badInput;
    this.details = options.details;
  }

  /** The one line a user sees. */
  oneLine(): string {
    return this.hint ? `${this.message}: ${this.hint}` : this.message;
  }
}

export function isApplianceError(e: unknown): e is ApplianceError {
  return e instanceof ApplianceError;
}
