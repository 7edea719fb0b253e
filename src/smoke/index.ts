export { junitXml, type TestCase } from './junit.js';
export { runSmoke, type SmokeOptions, type SmokeReport } from './smoke.js';
