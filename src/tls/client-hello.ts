/**
 * Reads what interception needs from the first TLS record a client sends
 * (its ClientHello) without consuming it: the server name (SNI) and the
 * ALPN protocols offered. A client offering h2 alone cannot be served by
 * the HTTP/1.1 server behind interception, and is recognised before the
 * handshake.
 */

export type HelloPeek =
  /** More bytes are needed. */
  | { readonly kind: 'partial' }
  /** Not a TLS handshake (plain bytes through the tunnel) or a malformed one. */
  | { readonly kind: 'not-tls' }
  | { readonly kind: 'hello'; readonly serverName: string | undefined; readonly alpn: readonly string[] };

/** Bytes a ClientHello may take before the peek gives up (one TLS record is at most 16 KiB + header). */
export const MAX_HELLO_BYTES = 16_384 + 5;

export function peekClientHello(data: Buffer): HelloPeek {
  if (data.length < 1) return { kind: 'partial' };
  if (data[0] !== 0x16) return { kind: 'not-tls' }; // handshake record
  if (data.length < 5) return { kind: 'partial' };
  const recordLength = data.readUInt16BE(3);
  if (recordLength > 16_384) return { kind: 'not-tls' };
  if (data.length < 5 + recordLength) return { kind: 'partial' };
  const hello = data.subarray(5, 5 + recordLength);
  try {
    if (hello[0] !== 0x01) return { kind: 'not-tls' }; // ClientHello
    const length = (hello[1]! << 16) | (hello[2]! << 8) | hello[3]!;
    // A ClientHello split over records (huge, post-quantum key shares) is not followed: read what this record holds.
    const body = hello.subarray(4, 4 + Math.min(length, hello.length - 4));
    let at = 2 + 32; // version, random
    at += 1 + body[at]!; // session id
    at += 2 + body.readUInt16BE(at); // cipher suites
    at += 1 + body[at]!; // compression methods
    if (at + 2 > body.length) return { kind: 'hello', serverName: undefined, alpn: [] };
    const end = Math.min(body.length, at + 2 + body.readUInt16BE(at));
    at += 2;
    let serverName: string | undefined;
    const alpn: string[] = [];
    while (at + 4 <= end) {
      const type = body.readUInt16BE(at);
      const size = body.readUInt16BE(at + 2);
      const ext = body.subarray(at + 4, at + 4 + size);
      at += 4 + size;
      if (type === 0) {
        // server_name: list length, then (type 0 = host_name, length, name)
        let p = 2;
        while (p + 3 <= ext.length) {
          const nameType = ext[p]!;
          const nameLength = ext.readUInt16BE(p + 1);
          if (nameType === 0)
            serverName = ext
              .subarray(p + 3, p + 3 + nameLength)
              .toString('latin1')
              .toLowerCase();
          p += 3 + nameLength;
        }
      } else if (type === 16) {
        // ALPN: list length, then length-prefixed protocol names
        let p = 2;
        while (p < ext.length) {
          const n = ext[p]!;
          alpn.push(ext.subarray(p + 1, p + 1 + n).toString('latin1'));
          p += 1 + n;
        }
      }
    }
    return { kind: 'hello', serverName, alpn };
  } catch {
    return { kind: 'not-tls' };
  }
}
