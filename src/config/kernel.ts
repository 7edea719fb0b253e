/**
 * The kernel headers series Buildroot must be told about. The appliance builds its kernel with
 * Buildroot (headers "same as kernel being built"), and Buildroot then needs the kernel's series
 * as `BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_<major>_<minor>`: it hides packages by it and checks
 * it against the built headers late in the build ("Incorrect selection of kernel headers").
 */

/**
 * The series Buildroot 2026.02.3 offers in the "Custom kernel headers series" choice
 * (package/linux-headers/Config.in.host): every minor from 0 up to the newest of each major.
 * The one place this list lives; a Buildroot-tier test compares it with the real tree.
 */
const newestMinor: Readonly<Record<number, number>> = { 3: 19, 4: 20, 5: 19, 6: 19 };

/** "6.18" for every series Buildroot 2026.02.3 offers, oldest first. */
export const kernelHeaderSeries: readonly string[] = Object.entries(newestMinor).flatMap(([major, newest]) =>
  Array.from({ length: newest + 1 }, (_, minor) => `${major}.${minor}`),
);

/** The series ("6.18") of a kernel version ("6.18.7"). */
export function kernelSeries(version: string): string {
  return version.split('.').slice(0, 2).join('.');
}

/**
 * BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_<major>_<minor> for a kernel version, or undefined when
 * Buildroot 2026.02.3 offers no such series.
 */
export function kernelHeadersSymbol(version: string): string | undefined {
  const series = kernelSeries(version);
  if (!kernelHeaderSeries.includes(series)) return undefined;
  return `BR2_PACKAGE_HOST_LINUX_HEADERS_CUSTOM_${series.replace('.', '_')}`;
}

/** Why a kernel version cannot be built, or undefined. */
export function kernelVersionProblem(version: string): string | undefined {
  if (kernelHeadersSymbol(version) !== undefined) return undefined;
  const first = kernelHeaderSeries[0];
  const last = kernelHeaderSeries[kernelHeaderSeries.length - 1];
  return `Buildroot 2026.02.3 knows no kernel headers series ${kernelSeries(version)}: pick a kernel.version of series ${first} to ${last}`;
}
