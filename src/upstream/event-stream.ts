/**
 * What SPEC §16 reads of a `text/event-stream` body, per the SSE grammar
 * (lines end with CRLF, LF or CR; a line may span chunks): where its first
 * event line starts (comments and blank lines before it do not count), and
 * whether the bytes sent so far end on an event boundary. Bytes are only
 * looked at, never changed: the body goes on as received.
 */
const CR = 0x0d;
const LF = 0x0a;
const COLON = 0x3a;
/** A UTF-8 byte order mark, which a stream may start with (the SSE parser drops it). */
const BOM = [0xef, 0xbb, 0xbf] as const;
const EVENT_STREAM = 'text/event-stream';

/**
 * An event stream whose bytes are its events: `Content-Type: text/event-stream` and no
 * `Content-Encoding` (a compressed stream's bytes say nothing until decoded). `headerName` reads a raw
 * name lower-cased (response.ts).
 */
export function isEventStream(rawHeaders: readonly Buffer[], headerName: (raw: Buffer) => string): boolean {
  let eventStream: boolean | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = headerName(rawHeaders[i]!);
    if (name === 'content-encoding') {
      const coding = rawHeaders[i + 1]!.toString('latin1').trim().toLowerCase();
      if (coding !== '' && coding !== 'identity') return false;
    } else if (name === 'content-type' && eventStream === undefined) {
      // The first one, as node and the client read it.
      const type = rawHeaders[i + 1]!.toString('latin1').trim().toLowerCase();
      eventStream =
        type.startsWith(EVENT_STREAM) &&
        (type.length === EVENT_STREAM.length || /[\s;]/.test(type[EVENT_STREAM.length]!));
    }
  }
  return eventStream === true;
}

/** Finds the first line of a stream that is neither blank nor a comment (a line starting with `:`). */
export class FirstEventLine {
  private atLineStart = true;
  /** The last byte was a CR: an LF right after it ends the same line. */
  private afterCr = false;
  /** Bytes of a leading byte order mark seen so far (-1 once past the stream's start). */
  private bom = 0;

  /** True when an event line begins in `chunk` (or began before). */
  feed(chunk: Buffer): boolean {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]!;
      if (this.bom >= 0) {
        if (byte === BOM[this.bom]) {
          this.bom = this.bom === 2 ? -1 : this.bom + 1;
          continue;
        }
        this.bom = -1;
      }
      if (this.afterCr && byte === LF) {
        this.afterCr = false;
        continue;
      }
      this.afterCr = byte === CR;
      if (byte === CR || byte === LF) this.atLineStart = true;
      else if (this.atLineStart) {
        if (byte !== COLON) return true;
        this.atLineStart = false;
      }
    }
    return false;
  }
}

/**
 * The last bytes of a stream, kept to end it on an event boundary: what must be written before an
 * event of Breakwater's own so that it is parsed as one (SPEC §16).
 */
export class StreamTail {
  private readonly last = Buffer.alloc(3);
  private kept = 0;

  see(chunk: Buffer): void {
    if (chunk.length >= 3) {
      chunk.copy(this.last, 0, chunk.length - 3);
      this.kept = 3;
      return;
    }
    const keep = Math.min(3 - chunk.length, this.kept);
    this.last.copy(this.last, 0, this.kept - keep, this.kept);
    chunk.copy(this.last, keep);
    this.kept = keep + chunk.length;
  }

  /**
   * '' on an event boundary (nothing sent, or a blank line last); else the line ends that close the
   * line and the event under way. An event the upstream left unfinished is thus dispatched as it
   * stands: the error event after it says the stream broke.
   */
  closing(): string {
    const { last, kept } = this;
    if (kept === 0) return '';
    const end = last[kept - 1]!;
    // Stopped inside a line; or after a CR, which an LF of ours would only complete (CRLF).
    if (end === CR) return kept >= 2 && (last[kept - 2] === LF || last[kept - 2] === CR) ? '' : '\n\n';
    if (end !== LF) return '\n\n';
    // An LF: a blank line when the line end before it is right there (LF LF, CR LF CR LF's tail, CR CR LF).
    let i = kept - 1;
    if (i >= 1 && last[i - 1] === CR) i -= 1;
    if (i === 0) return kept < 3 ? '' : '\n';
    const before = last[i - 1];
    return before === LF || before === CR ? '' : '\n';
  }
}
