/**
 * The layering of src/ (docs/architecture.md), checked by `npm test`
 * (`npm run lint:layers`): a module may import from its own folder and from
 * the layers below it, never from a layer above or beside it, and no import
 * circle is allowed anywhere.
 *
 *   lib  <- config <- errors, router <- upstream <- observe <- credentials <- policy, tls
 *        <- runtime <- server <- app <- demo <- cli
 */
const LAYERS = [
  ['lib', 0],
  ['config', 1],
  ['errors', 2],
  ['router', 2],
  ['upstream', 3],
  ['observe', 4],
  ['credentials', 4.5],
  ['policy', 5],
  ['tls', 5],
  ['runtime', 6],
  ['server', 7],
  ['app', 8],
  ['demo', 9],
  ['cli', 10],
];
/** The path pattern of a layer: a folder, or one file for cli; runtime and app are both (runtime.ts and runtime/, app.ts and app/). */
const pathOf = (name) => (['runtime', 'app'].includes(name) ? `^src/${name}(\\.ts$|/)` : name === 'cli' ? `^src/${name}\\.ts$` : `^src/${name}/`);

const forbidden = [
  {
    name: 'no-circular',
    severity: 'error',
    comment: 'An import circle: move the shared part (often a type) down to a module both can import.',
    from: { path: '^src/' },
    to: { circular: true },
  },
];
for (const [name, rank] of LAYERS) {
  const above = LAYERS.filter(([other, otherRank]) => other !== name && otherRank >= rank).map(([other]) => pathOf(other));
  if (above.length === 0) continue;
  forbidden.push({
    name: `layer-${name}`,
    severity: 'error',
    comment: `src/${name} may import only from layers below it (docs/architecture.md); this edge runs back up or sideways.`,
    from: { path: pathOf(name) },
    to: { path: above },
  });
}

module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    includeOnly: '^src/',
  },
};
