/**
 * The built-in defaults of every section (SPEC §3), in the file's own
 * notation, gathered from where each section is declared (schema*.ts): the
 * resolver fills a file with them (merge.ts), once. SPEC §3's example shows
 * the same values; test/unit/config-resolve.test.ts keeps the two equal.
 */
import { FILE_DEFAULTS } from './schema.js';
import { EDGE_DEFAULTS } from './schema-edge.js';
import { POLICY_DEFAULTS } from './schema-policies.js';
import { UPSTREAM_DEFAULTS } from './schema-upstream.js';
import { SERVICE_DEFAULTS } from './schema-services.js';

export const DEFAULTS = {
  ...EDGE_DEFAULTS,
  ...FILE_DEFAULTS,
  ...POLICY_DEFAULTS,
  ...UPSTREAM_DEFAULTS,
  ...SERVICE_DEFAULTS,
};
