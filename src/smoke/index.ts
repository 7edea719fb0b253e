export { junitXml, type TestCase } from './junit.js';
export { freePort, runSmoke, type SmokeOptions, type SmokeReport } from './smoke.js';
