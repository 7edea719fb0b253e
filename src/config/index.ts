export { kernelHeaderSeries, kernelHeadersSymbol, kernelSeries, kernelVersionProblem } from './kernel.js';
export {
  type ApplianceConfig,
  type Arch,
  arches,
  configPath,
  defconfigName,
  loadAppliance,
  parseAppliance,
  parseSetting,
  parseYamlWith,
  type SettingFacts,
  settingFacts,
} from './load.js';
export {
  defaultEmulated,
  dockerStorageDriver,
  type EmulatedTarget,
  emulatedPlatforms,
  emulatedTargets,
  emulatorPath,
  nativePlatform,
  platformTargets,
} from './multiarch.js';
export { configReferenceMarkdown } from './reference.js';
export {
  type ApplianceInput,
  type ApplianceSettings,
  applianceJsonSchema,
  applianceSchema,
} from './schema.js';
export { type Cidr, formatSize, parseCidr, parseSize } from './values.js';
