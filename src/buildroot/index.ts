export {
  checkDefconfig,
  checkPackages,
  compareConfigs,
  type DefconfigResult,
  type PackageLint,
  parseKconfigValues,
  pythonWith,
  type SymbolProblem,
} from './check.js';
export {
  buildrootVersionOf,
  cachedBuildrootDir,
  type FetchOptions,
  fetchBuildroot,
  locateBuildroot,
  releasePin,
} from './locate.js';
export { type PinResult, pinHashes } from './pin-hashes.js';
