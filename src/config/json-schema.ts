/**
 * The config's JSON Schema as `breakwater schema` prints it, for editors
 * (yaml-language-server) and CI linters. It is the schema the validator uses,
 * with each custom `format` also written as a `pattern` where one exists, so
 * tools that ignore unknown formats still check the unit strings.
 */
import { ConfigFileSchema } from './schema.js';

const PATTERNS: Record<string, string> = {
  duration: '^(\\d+(\\.\\d+)?(ms|s|m|h))+$',
  'duration-or-zero': '^(\\d+(\\.\\d+)?(ms|s|m|h))+$',
  size: '^\\d+(\\.\\d+)?\\s?(B|KB|MB|GB|KiB|MiB|GiB)$',
  'size-or-zero': '^\\d+(\\.\\d+)?\\s?(B|KB|MB|GB|KiB|MiB|GiB)$',
  rate: '^\\d+(\\.\\d+)?\\s?/\\s?(s|min|h)$',
  share: '^\\d+(\\.\\d+)?\\s?%$',
  condition: '^(5xx|gateway-error|connect-failure|reset|timeout|[1-5]\\d\\d)$',
  'header-selector': "^header:[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
  'limit-key': "^(route|client-ip|header:[!#$%&'*+.^_`|~0-9A-Za-z-]+)$",
  'path-prefix': '^/',
};

function annotate(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(annotate);
  if (!node || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) out[key] = annotate(value);
  const format = out.format;
  if (typeof format === 'string' && PATTERNS[format] && out.pattern === undefined) out.pattern = PATTERNS[format];
  return out;
}

export function configJsonSchema(): Record<string, unknown> {
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    ...(annotate(JSON.parse(JSON.stringify(ConfigFileSchema))) as Record<string, unknown>),
  };
}
