export {
  type ArtifactManifest,
  type BuildOptions,
  type BuildResult,
  build,
  buildLayout,
  formatPlan,
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
export { type ArchiveHash, hashArchives, type PinnedArchive } from './pin-hashes.js';
export { type BuildPlan, type BuildSnapshot, planBuild } from './planner.js';
export { formatProgress, ProgressTracker, parseProgressLine } from './progress.js';
export { generateSbom, type SbomMeta, sbomFromShowInfo } from './sbom.js';
export { downloadSources, type SourceResult } from './source.js';
