/**
 * `breakwater ca create --hosts H1,H2 --out DIR`: a name-constrained CA for
 * `forwardProxy.intercept`, written as DIR/ca.crt (the certificate apps
 * trust), DIR/ca.key (owner-only, never overwritten) and DIR/bundle.pem
 * (the system roots plus this CA, for tools that take one bundle).
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { rootCertificates } from 'node:tls';
import { isHostPattern } from '../config/formats.js';
import { createCa } from './certificates.js';

export async function caCreate(hostsOption: string | undefined, outOption: string | undefined): Promise<number> {
  if (!hostsOption || !outOption) {
    process.stderr.write('breakwater: ca create needs --hosts H1,H2 (the hosts to intercept) and --out DIR\n');
    return 2;
  }
  const hosts = hostsOption
    .split(',')
    .map((host) => host.trim().toLowerCase())
    .filter(Boolean);
  const bad = hosts.filter((host) => !isHostPattern(host) || host === '*');
  if (hosts.length === 0 || bad.length > 0) {
    process.stderr.write(
      `breakwater: --hosts: ${bad.length > 0 ? `"${bad[0]}" is not a host name, "*.domain" pattern or IP address` : 'no host given'}\n`,
    );
    return 2;
  }
  const out = path.resolve(outOption);
  const keyFile = path.join(out, 'ca.key');
  if (existsSync(keyFile)) {
    process.stderr.write(
      `breakwater: ${keyFile} already exists: refusing to overwrite a CA key (apps may trust it). Remove it first, or choose another --out.\n`,
    );
    return 1;
  }
  const ca = await createCa(hosts);
  mkdirSync(out, { recursive: true, mode: 0o700 });
  writeFileSync(keyFile, ca.keyPem, { mode: 0o600, flag: 'wx' });
  writeFileSync(path.join(out, 'ca.crt'), ca.certPem, { mode: 0o644 });
  writeFileSync(path.join(out, 'bundle.pem'), `${rootCertificates.join('\n')}\n${ca.certPem}`, { mode: 0o644 });
  const crt = path.join(out, 'ca.crt');
  const bundle = path.join(out, 'bundle.pem');
  process.stdout.write(`Made a CA that can only sign for: ${hosts.join(', ')}
  ${crt}      the certificate your apps trust
  ${keyFile}      its key (owner-only; Breakwater reads it, nothing else should)
  ${bundle}   the system roots plus this CA

Config:
  forwardProxy:
    connect: { mode: intercept }
    intercept:
      caCert: ${crt}
      caKey: ${keyFile}
      hosts: [${hosts.map((host) => JSON.stringify(host)).join(', ')}]

Trust it in the app (HTTPS_PROXY=http://localhost:3128):
  Node.js:          NODE_EXTRA_CA_CERTS=${crt}
  Python requests:  REQUESTS_CA_BUNDLE=${bundle}
  curl:             CURL_CA_BUNDLE=${bundle}   (or --cacert ${bundle})
  OpenSSL-based:    SSL_CERT_FILE=${bundle}
  Java:             keytool -importcert -noprompt -alias breakwater -file ${crt} -keystore truststore.p12 -storepass changeit
                    then -Djavax.net.ssl.trustStore=truststore.p12 -Djavax.net.ssl.trustStorePassword=changeit
`);
  return 0;
}
