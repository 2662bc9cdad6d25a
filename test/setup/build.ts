/**
 * Builds dist/ once before the tests (as `npm run build` does), so the CLI tests run the code under
 * test, not whatever an earlier build left behind.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
  execFileSync(
    process.execPath,
    [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.build.json')],
    {
      stdio: 'inherit',
    },
  );
  // The build's second step (npm run build): the standalone config validator.
  execFileSync(process.execPath, [path.join(root, 'dist/config/standalone.js')], { stdio: 'inherit' });
}
