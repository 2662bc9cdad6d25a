/**
 * Certificates for TLS interception (SPEC §3 `forwardProxy.intercept`):
 * the local CA `breakwater ca create` makes, and the leaves minted from it
 * for each intercepted host.
 *
 * Keys are P-256 from node's WebCrypto; certificates are built and signed
 * with @peculiar/x509 1.x (ECDSA signing by node's crypto: well under a
 * millisecond per leaf, against ~30 ms for node-forge's pure-JS RSA).
 *
 * The CA carries a critical Name Constraints extension that permits only
 * the hosts it was made for: `api.stripe.com` permits that name (and names
 * under it), `*.github.com` permits github.com and every name under it,
 * and an IP literal permits that one address. A leaked key cannot mint a
 * certificate that OpenSSL, Python or Node accept for anything else.
 */
import { randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  GeneralName as AsnGeneralName,
  GeneralSubtree,
  GeneralSubtrees,
  NameConstraints,
  id_ce_nameConstraints,
} from '@peculiar/asn1-x509';
import * as x509 from '@peculiar/x509';
import { systemClock } from '../lib/clock.js';

x509.cryptoProvider.set(webcrypto as never);

const EC: webcrypto.EcKeyImportParams & webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' };

export interface CaFiles {
  readonly certPem: string;
  readonly keyPem: string;
}

/** The Name Constraints extension permitting exactly these host patterns. */
function nameConstraints(hosts: readonly string[]): x509.Extension {
  const permitted = hosts.map((host) => {
    if (isIP(host)) {
      // An iPAddress constraint is the address and its mask: this one address only.
      return new GeneralSubtree({ base: new AsnGeneralName({ iPAddress: `${host}/${isIP(host) === 4 ? 32 : 128}` }) });
    }
    // RFC 5280: a dNSName constraint permits the name and every name under it.
    return new GeneralSubtree({ base: new AsnGeneralName({ dNSName: host.replace(/^\*\./, '') }) });
  });
  // A name type without any permitted subtree would be unconstrained: with
  // no IP host, every address is excluded; with no DNS host, only names
  // under the reserved `.invalid` are permitted.
  if (!hosts.some((host) => !isIP(host)))
    permitted.push(new GeneralSubtree({ base: new AsnGeneralName({ dNSName: 'invalid' }) }));
  const excluded = hosts.some((host) => isIP(host))
    ? []
    : ['0.0.0.0/0', '::/0'].map((range) => new GeneralSubtree({ base: new AsnGeneralName({ iPAddress: range }) }));
  const value = new NameConstraints({
    permittedSubtrees: new GeneralSubtrees(permitted),
    ...(excluded.length > 0 ? { excludedSubtrees: new GeneralSubtrees(excluded) } : {}),
  });
  return new x509.Extension(id_ce_nameConstraints, true, AsnConvert.serialize(value));
}

function serial(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f; // positive
  return bytes.toString('hex');
}

/** A P-256 CA for interception, valid `days`, constrained to `hosts`. */
/** `wall`: epoch ms, for the validity period (the system clock by default). */
export async function createCa(
  hosts: readonly string[],
  options: { days?: number; name?: string; wall?: () => number } = {},
): Promise<CaFiles> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = (options.wall ?? systemClock.wall)();
  const name = `CN=${options.name ?? 'Breakwater interception CA'}, O=Breakwater (local)`;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: name,
    issuer: name,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (options.days ?? 825) * 86_400_000),
    signingAlgorithm: SIGNING,
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      ...(hosts.length > 0 ? [nameConstraints(hosts)] : []),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: cert.toString('pem'), keyPem: x509.PemConverter.encode(pkcs8, 'PRIVATE KEY') };
}

export interface LeafIssuer {
  /** A leaf certificate (PEM) for `host`, signed by the CA, with the CA appended (the chain to send). */
  issue(host: string): Promise<{ certChainPem: string }>;
  /** The one leaf key of this process (PEM). */
  readonly keyPem: string;
}

/**
 * Reads the CA (PEM) and makes one leaf key for the process; leaves are valid `days` (short: they are re-minted
 * at start).
 */
export async function createLeafIssuer(
  ca: CaFiles,
  options: { days?: number; wall?: () => number } = {},
): Promise<LeafIssuer> {
  // Only the certificate and the non-extractable key are kept, never the key's PEM.
  const caCertPem = ca.certPem.trim();
  const caCert = new x509.X509Certificate(caCertPem);
  const caKey = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decode(ca.keyPem)[0]!, EC, false, ['sign']);
  const leafKeys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const keyPem = x509.PemConverter.encode(
    await webcrypto.subtle.exportKey('pkcs8', leafKeys.privateKey),
    'PRIVATE KEY',
  );
  const authorityKeyId = await x509.AuthorityKeyIdentifierExtension.create(caCert);
  const subjectKeyId = await x509.SubjectKeyIdentifierExtension.create(leafKeys.publicKey);
  const days = options.days ?? 7;
  const wall = options.wall ?? systemClock.wall;
  return {
    keyPem,
    async issue(host) {
      const now = wall();
      const san = new x509.SubjectAlternativeNameExtension(
        [isIP(host) ? { type: 'ip', value: host } : { type: 'dns', value: host }],
        false,
      );
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: serial(),
        subject: isIP(host) ? 'CN=breakwater-intercept' : `CN=${host}`,
        issuer: caCert.subject,
        notBefore: new Date(now - 60_000),
        notAfter: new Date(Math.min(now + days * 86_400_000, caCert.notAfter.getTime())),
        signingAlgorithm: SIGNING,
        publicKey: leafKeys.publicKey,
        signingKey: caKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          san,
          authorityKeyId,
          subjectKeyId,
        ],
      });
      return { certChainPem: `${leaf.toString('pem')}\n${caCertPem}\n` };
    },
  };
}
