/**
 * The abort reason of an attempt whose per-try or total deadline passed.
 * Matched by its code, as every error here is: the attempt turns it into a
 * `timeout` outcome (upstream/classify.ts `classifyAbort`), UPSTREAM_TIMEOUT.
 */
export class DeadlineExceeded extends Error {
  readonly code = 'UPSTREAM_TIMEOUT';
  constructor(detail: string) {
    super(detail);
    this.name = 'DeadlineExceeded';
  }
}
