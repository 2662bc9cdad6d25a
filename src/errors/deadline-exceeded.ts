/**
 * The abort reason of an attempt whose per-try or total deadline passed.
 * The attempt turns it into a `timeout` outcome (UPSTREAM_TIMEOUT).
 */
export class DeadlineExceeded extends Error {
  constructor(readonly detail: string) {
    super(detail);
    this.name = 'DeadlineExceeded';
  }
}
