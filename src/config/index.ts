/** The config model (SPEC §3): load and check a file, and the typed result every other module reads. */
export { loadConfig, parseConfig, type LoadedConfig, type LoadResult } from './load.js';
export { formatProblem, type ConfigProblem } from './problems.js';
export type * from './types.js';
