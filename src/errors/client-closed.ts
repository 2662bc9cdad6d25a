/**
 * The client went away before its response was complete. Not an error of
 * the catalogue: nobody is left to send a body to. It aborts the request's
 * signal so that every layer stops and the upstream request is destroyed.
 */
export class ClientClosedError extends Error {
  readonly code = 'CLIENT_CLOSED';
  constructor() {
    super('the client closed the connection');
    this.name = 'ClientClosedError';
  }
}
