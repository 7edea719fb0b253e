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
  type SettingFacts,
  settingFacts,
} from './load.js';
export { configReferenceMarkdown } from './reference.js';
export {
  type ApplianceInput,
  type ApplianceSettings,
  applianceJsonSchema,
  applianceSchema,
} from './schema.js';
export { formatSize, parseSize } from './values.js';
