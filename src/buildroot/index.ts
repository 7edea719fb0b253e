export {
  type ArtifactManifest,
  type BuildOptions,
  type BuildResult,
  build,
  buildLayout,
  downloadSources,
  formatPlan,
  generateSbom,
} from './build.js';
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
export { type Diagnosis, diagnoseBuildLog } from './diagnose.js';
export {
  buildrootVersionOf,
  cachedBuildrootDir,
  type FetchOptions,
  fetchBuildroot,
  locateBuildroot,
  releasePin,
} from './locate.js';
export { type PinResult, pinHashes } from './pin-hashes.js';
export { type BuildPlan, type BuildSnapshot, planBuild } from './planner.js';
export { formatProgress, ProgressTracker, parseProgressLine } from './progress.js';
export { type SbomMeta, sbomFromShowInfo } from './sbom.js';
