/**
 * Every host tool that the code or the tests run, daemons' helpers included, comes from a Debian
 * package that `.ci/run` installs (or from an Essential package that every Debian has). The tools
 * are found by reading the sources: the first argument of each process call in src/ and test/,
 * the commands of `sh -c` strings, and the command words of the shell fixtures. A call whose
 * command is not a literal must be listed in `indirect` below, so a new one cannot slip past.
 * Where dpkg is available, each tool's package is checked with `dpkg -S`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { providers } from '../../src/run/index.js';
import { repoRoot } from '../helpers.js';

/** Tools only the tests and their fixtures run (the product's tools are in src/run's `providers`). */
const testTools: Record<string, string> = {
  bash: 'bash',
  sh: 'dash',
  dash: 'dash',
  cp: 'coreutils',
  ln: 'coreutils',
  rm: 'coreutils',
  mkdir: 'coreutils',
  sleep: 'coreutils',
  sha256sum: 'coreutils',
  cut: 'coreutils',
  sort: 'coreutils',
  tr: 'coreutils',
  cat: 'coreutils',
  ls: 'coreutils',
  date: 'coreutils',
  dirname: 'coreutils',
  basename: 'coreutils',
  id: 'coreutils',
  uname: 'coreutils',
  nproc: 'coreutils',
  nice: 'coreutils',
  mktemp: 'coreutils',
  mkfifo: 'coreutils',
  debugfs: 'e2fsprogs',
  'qemu-io': 'qemu-utils',
  install: 'coreutils',
  du: 'coreutils',
  stat: 'coreutils',
  readlink: 'coreutils',
  seq: 'coreutils',
  truncate: 'coreutils',
  tail: 'coreutils',
  head: 'coreutils',
  mv: 'coreutils',
  chroot: 'coreutils',
  timeout: 'coreutils',
  chmod: 'coreutils',
  grep: 'grep',
  sed: 'sed',
  awk: 'gawk',
  find: 'findutils',
  xargs: 'findutils',
  cmp: 'diffutils',
  gzip: 'gzip',
  cpio: 'cpio',
  flock: 'util-linux',
  mount: 'mount',
  umount: 'mount',
  pgrep: 'procps',
  file: 'file',
  bc: 'bc',
  xz: 'xz-utils',
  zstd: 'zstd',
  depmod: 'kmod',
  unsquashfs: 'squashfs-tools',
  'ssh-keygen': 'openssh-client',
  ssh: 'openssh-client',
  sshd: 'openssh-server',
  ebtables: 'iptables',
  iptables: 'iptables',
  ip6tables: 'iptables',
  ip: 'iproute2',
  'apt-get': 'apt',
  'apt-cache': 'apt',
  'dpkg-query': 'dpkg',
  'dpkg-deb': 'dpkg',
  busybox: 'busybox-static',
  systemctl: 'systemd',
  virtlogd: 'libvirt-daemon',
  libvirtd: 'libvirt-daemon',
  'qemu-system-x86_64': 'qemu-system-x86',
  'qemu-system-aarch64': 'qemu-system-arm',
  'aarch64-linux-gnu-gcc': 'gcc-aarch64-linux-gnu',
  'qemu-aarch64-static': 'qemu-user-static',
  mmdebstrap: 'mmdebstrap',
};

/** Helpers that daemons run (no source here names them): libvirtd's, for networks and nwfilter. */
const daemonTools: Record<string, string> = {
  dnsmasq: 'dnsmasq-base',
  iptables: 'iptables',
  ip6tables: 'iptables',
  ebtables: 'iptables',
};

/** Tools from outside Debian's archive: this Node, and what the kernel source tree brings. */
const notDebian = new Set(['node', 'npm', 'npx', 'merge_config.sh']);

/** Names that are not tools: a test's deliberately missing command. */
const notTools = new Set(['qemu-img-does-not-exist']);

/**
 * Calls whose command is an expression, not a literal: `<file> <expression>` -> the tools it can
 * be. A new non-literal call fails the test until it is listed here.
 */
const indirect: Record<string, string[]> = {
  'src/buildroot/check.ts py': ['python3'],
  'src/buildroot/check.ts python': ['python3'],
  'src/buildroot/build.ts make': ['make'],
  'src/buildroot/configure.ts make': ['make'],
  'src/buildroot/sbom.ts make': ['make'],
  'src/buildroot/source.ts make': ['make'],
  'src/doctor/index.ts name': [], // doctor's own tables, read by doctorPairs below
  'src/smoke/boot.ts qemu': ['qemu-system-x86_64', 'qemu-system-aarch64'],
  'src/smoke/smoke.ts qemu': ['qemu-system-x86_64', 'qemu-system-aarch64'], // hasTool(qemu)
  'src/guest/machine.ts qemuBinary per arch': ['qemu-system-x86_64', 'qemu-system-aarch64'],
  "test/kernel/fragment.test.ts join(src, 'scripts/kconfig/merge_config.sh')": ['merge_config.sh'],
  'test/cli/input.test.ts sh -c: "X"': ['node'], // "${process.execPath}" "${cliPath}" …
  'test/render/determinism.test.ts sh -c: "$0"': ['node'], // exec "$0" "$@" with this Node as $0
  'test/libvirt/tier.ts daemon': ['virtlogd', 'libvirtd'],
  'test/libvirt/health-judge.test.ts shellFile': ['sh', 'busybox'], // dash, and BusyBox's ash
  'test/smoke/docker-gate.test.ts shell': ['bash', 'dash', 'busybox'], // the guests' kinds of shell
  'test/install/pack.test.ts npm': ['npm'],
  'test/install/pack.test.ts bin': ['node'], // the installed package's appliance
  // the CI template's smoke job script: appliance (this Node) on PATH
  'test/install/gitlab-ci.test.ts sh -c line': ['node'],
  // shell fixtures: arrays and variables used as commands
  'test/fixtures/standin/build-standin.sh "$src/scripts/kconfig/merge_config.sh"': ['merge_config.sh'],
  'test/fixtures/standin/build-standin.sh "${cross}gcc"': ['gcc', 'aarch64-linux-gnu-gcc'],
  'test/fixtures/standin/build-standin.sh "$repo/test/fixtures/kernel-source.sh"': [],
  'test/fixtures/standin/boot-check.sh "$here/build-standin.sh"': [],
  'test/fixtures/standin/boot-check.sh "${sshc[@]}"': ['timeout', 'ssh'],
  'test/fixtures/standin/boot-check.sh "${probe[@]}"': ['timeout', 'ssh'],
  'test/fixtures/standin/boot-check.sh "${sshc[@]:2}"': ['ssh'],
  'test/fixtures/standin/boot-check.sh "${qemu[@]}"': ['qemu-system-x86_64'],
  'test/fixtures/install/ci-script.sh "$@"': [],
};

/** Process-starting functions whose first argument is the command. */
const callees = new Set([
  'runCommand',
  'startBackground',
  'runInteractive',
  'hasTool',
  'execa',
  'spawn',
  'spawnSync',
  'execFileSync',
  'execFile',
  'execAsync',
  'spawnCollect',
]);

/** Keywords after which a command follows. */
const keywords = new Set('if then else elif fi while until do done esac function time ! { }'.split(' '));
/** Builtins and keywords whose words are arguments, not commands. */
const builtins = new Set(
  (
    'for select [ [[ echo printf read cd set export local return exit shift trap source . eval true ' +
    'false test : wait kill command unset declare readonly break continue let pwd umask type getopts'
  ).split(' '),
);

function walk(dir: string, ext: RegExp, out: string[] = []): string[] {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) walk(path, ext, out);
    else if (ext.test(entry.name)) out.push(path);
  }
  return out;
}

interface Use {
  tool: string;
  where: string;
}

/**
 * Command words of a shell script: a small lexer that knows quotes, command substitution,
 * heredocs, case patterns, assignments, function definitions and the wrappers that run a
 * command (exec, timeout, xargs). Words that are expressions are returned with `indirect`.
 */
function shellCommands(script: string): { commands: string[]; indirect: string[] } {
  const commands: string[] = [];
  const indirectWords: string[] = [];
  const functions = new Set([...script.matchAll(/^\s*([A-Za-z_][\w-]*)\s*\(\)\s*\{/gm)].map((m) => m[1]));
  // Heredoc bodies are data (a guest's scripts here), not host commands.
  const lines = script.split('\n');
  const kept: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    kept.push(line);
    const m = /<<-?\s*(['"]?)(\w+)\1/.exec(line);
    if (m) {
      while (i + 1 < lines.length && (lines[i + 1] ?? '').trim() !== m[2]) i++;
      i++; // the terminator
    }
  }
  scan(kept.join('\n'));
  return { commands: commands.filter((c) => !functions.has(c)), indirect: indirectWords };

  function scan(text: string): void {
    let i = 0;
    let commandPos = true;
    let wrapper: '' | 'exec' | 'timeout' | 'xargs' | 'stop' = '';
    let skipNext = 0;
    let casePatterns = 0; // >0 while reading case patterns
    let caseHead = false;
    let inTest = false; // inside [[ … ]], where && and || do not start commands
    while (i < text.length) {
      const c = text.charAt(i);
      if (c === '#' && (i === 0 || /\s/.test(text.charAt(i - 1)))) {
        while (i < text.length && text.charAt(i) !== '\n') i++;
        continue;
      }
      if (c === '\n' || c === ';' || c === '|' || c === '&' || c === '(' || c === ')' || c === '`') {
        if (c === ';' && text.charAt(i + 1) === ';') {
          casePatterns = 1;
          i += 2;
          continue;
        }
        if (c === ')' && casePatterns) casePatterns = 0;
        if (inTest && c !== '\n') {
          i++;
          continue;
        }
        if (c === '&' && text.charAt(i + 1) === '>') {
          i += 2;
          continue;
        }
        if (!(c === '\n' && casePatterns)) {
          commandPos = true;
          wrapper = '';
        }
        i++;
        continue;
      }
      if (/\s/.test(c)) {
        i++;
        continue;
      }
      // a word
      let word = '';
      while (i < text.length && !/[\s;|&()`]/.test(text.charAt(i))) {
        const ch = text.charAt(i);
        if (ch === "'") {
          const end = text.indexOf("'", i + 1);
          word += text.slice(i, end + 1);
          i = end + 1;
        } else if (ch === '"') {
          let j = i + 1;
          while (j < text.length && text.charAt(j) !== '"') {
            if (text.charAt(j) === '\\') j += 2;
            else if (text.charAt(j) === '$' && text.charAt(j + 1) === '(' && text.charAt(j + 2) !== '(') {
              const end = matchParen(text, j + 1);
              scan(text.slice(j + 2, end));
              j = end + 1;
            } else j++;
          }
          word += text.slice(i, j + 1);
          i = j + 1;
        } else if (ch === '$' && text.charAt(i + 1) === '(') {
          const end = matchParen(text, i + 1);
          if (text.charAt(i + 2) !== '(') scan(text.slice(i + 2, end));
          word += text.slice(i, end + 1);
          i = end + 1;
        } else if (ch === '\\') {
          word += text.slice(i, i + 2);
          i += 2;
        } else if ((ch === '<' || ch === '>') && text.charAt(i + 1) === '&') {
          word += text.slice(i, i + 2);
          i += 2;
        } else if ((ch === '<' || ch === '>') && word === '') {
          // a redirection: skip it and its target
          while (i < text.length && /[<>&0-9-]/.test(text.charAt(i))) i++;
          while (i < text.length && /\s/.test(text.charAt(i))) i++;
          while (i < text.length && !/[\s;|&()]/.test(text.charAt(i))) {
            if (text.charAt(i) === '"') i = text.indexOf('"', i + 1);
            i++;
          }
          word = '';
          break;
        } else {
          word += ch;
          i++;
        }
      }
      if (!word) continue;
      if (inTest) {
        if (word === ']]') inTest = false;
        continue;
      }
      if (caseHead) {
        if (word === 'in') {
          caseHead = false;
          casePatterns = 1;
        }
        continue;
      }
      if (casePatterns) {
        if (word === 'esac') casePatterns = 0;
        continue;
      }
      if (!commandPos) continue;
      if (skipNext > 0) {
        skipNext--;
        continue;
      }
      if (/^[A-Za-z_]\w*(\[[^\]]*\])?\+?=/.test(word)) {
        if (word.endsWith('=') && text.charAt(i) === '(') i = matchParen(text, i) + 1; // an array's elements
        continue; // an assignment; the command (if any) follows
      }
      if (/^[0-9]*[<>]/.test(word)) continue;
      if (wrapper === 'exec' || wrapper === 'xargs' || wrapper === 'timeout') {
        if (word.startsWith('-')) {
          if (wrapper === 'exec' && word === '-a') skipNext = 1;
          continue;
        }
        if (wrapper === 'timeout') {
          wrapper = 'xargs'; // the duration; the command follows
          continue;
        }
      }
      if (word === 'case') {
        caseHead = true;
        continue;
      }
      if (word === 'command' && /^\s+-[vV]/.test(text.slice(i))) {
        commandPos = false; // `command -v x` asks, it does not run x
        continue;
      }
      if (word === 'exec' || word === 'timeout' || word === 'xargs') {
        if (word !== 'exec') commands.push(word);
        wrapper = word;
        continue;
      }
      if (keywords.has(word)) continue; // a command follows
      if (builtins.has(word)) {
        inTest = word === '[[';
        commandPos = false;
        continue;
      }
      if (/^["$]/.test(word)) indirectWords.push(word);
      else if (/^[\w./+-]+$/.test(word) && !word.startsWith('-'))
        commands.push(word.split('/').pop() ?? word);
      commandPos = false;
      wrapper = word === 'chroot' ? 'stop' : '';
    }
  }
}

function matchParen(text: string, open: number): number {
  let depth = 0;
  for (let j = open; j < text.length; j++) {
    const ch = text.charAt(j);
    if (ch === "'") j = text.indexOf("'", j + 1);
    else if (ch === '(') depth++;
    else if (ch === ')' && --depth === 0) return j;
  }
  return text.length;
}

let wrappersAdded = false;
/** Per file: its own functions that pass their first parameter on as the command. */
const localWrappers = new Map<string, Set<string>>();

/** The function whose first parameter the expression is, if it is one. */
function wrapperOf(expr: ts.Expression): ts.SignatureDeclaration | undefined {
  if (!ts.isIdentifier(expr)) return undefined;
  for (let n = expr.parent; n; n = n.parent) {
    if (!ts.isFunctionLike(n)) continue;
    const at = n.parameters.findIndex((p) => ts.isIdentifier(p.name) && p.name.text === expr.text);
    if (at === 0) return n;
    if (at > 0) return undefined;
  }
  return undefined;
}

/** Process calls in a TypeScript file: literal commands, `sh -c` scripts, and non-literal commands. */
function tsUses(path: string): { uses: string[]; indirect: string[]; scripts: string[] } {
  const source = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
  const uses: string[] = [];
  const indirectExprs: string[] = [];
  const scripts: string[] = [];
  const local = localWrappers.get(path) ?? new Set<string>();
  localWrappers.set(path, local);
  const literal = (n: ts.Node | undefined): string | undefined => {
    if (!n) return undefined;
    if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n)) return n.text;
    if (ts.isTemplateExpression(n))
      return n.head.text + n.templateSpans.map((s) => `X${s.literal.text}`).join('');
    return undefined;
  };
  const visit = (node: ts.Node): void => {
    if (ts.isCallExpression(node)) {
      const callee = node.expression.getText(source);
      if ((callees.has(callee) || local.has(callee)) && node.arguments.length > 0) {
        const first = node.arguments[0] as ts.Expression;
        const file = literal(first);
        const fn = file === undefined ? wrapperOf(first) : undefined;
        if (fn) {
          // A wrapper (spawnCollect, a test's run()): its own callers are scanned.
          const name = fn && ts.isFunctionDeclaration(fn) ? fn.name?.text : undefined;
          if (name && !local.has(name)) {
            local.add(name);
            wrappersAdded = true;
          }
        } else if (file === undefined) indirectExprs.push(first.getText(source));
        else {
          uses.push(file.split('/').pop() ?? file);
          const args = node.arguments[1];
          if ((file === 'sh' || file === 'bash') && args && ts.isArrayLiteralExpression(args)) {
            const flagAt = args.elements.findIndex((e) => literal(e) === '-c');
            const script = args.elements[flagAt + 1];
            if (flagAt >= 0) {
              const text = literal(script);
              if (text !== undefined) scripts.push(text);
              else if (script) indirectExprs.push(`sh -c ${script.getText(source)}`);
            }
          }
        }
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return { uses, indirect: indirectExprs, scripts };
}

/** (tool, package) pairs that doctor suggests: its buildTools table and its tool(...) calls. */
function doctorPairs(): [string, string, string][] {
  const path = join(repoRoot, 'src/doctor/index.ts');
  const text = readFileSync(path, 'utf8');
  const pairs: [string, string, string][] = [];
  const table = /const buildTools[^=]*= \[([\s\S]*?)\n\];/.exec(text);
  if (!table) throw new Error('src/doctor/index.ts has no buildTools table');
  for (const m of (table[1] ?? '').matchAll(/\[\s*'([^']+)',\s*'([^']+)'\s*\]/g))
    pairs.push([m[1] ?? '', m[2] ?? '', 'doctor table']);
  for (const m of text.matchAll(/tool\(\s*'\w+',\s*'([^']+)',\s*'([^']+)'/g))
    pairs.push([m[1] ?? '', m[2] ?? '', 'doctor']);
  return pairs.map(([t, p, w]) => [t.split('/').pop() ?? t, p, w]);
}

function collect(): { src: Use[]; test: Use[]; unlisted: string[] } {
  const src: Use[] = [];
  const test: Use[] = [];
  const unlisted: string[] = [];
  const add = (list: Use[], tools: string[], where: string) => {
    for (const tool of tools) if (!notTools.has(tool)) list.push({ tool, where });
  };
  const files = [...walk(join(repoRoot, 'src'), /\.ts$/), ...walk(join(repoRoot, 'test'), /\.ts$/)];
  // Find wrappers first (functions that pass their first parameter on as the command).
  for (let round = 0; round < 5; round++) {
    wrappersAdded = false;
    for (const path of files) tsUses(path);
    if (!wrappersAdded) break;
  }
  for (const path of files) {
    const rel = relative(repoRoot, path);
    const list = rel.startsWith('src/') ? src : test;
    const found = tsUses(path);
    add(list, found.uses, rel);
    for (const script of found.scripts) {
      const sh = shellCommands(script);
      add(list, sh.commands, `${rel} (sh -c)`);
      for (const w of sh.indirect) {
        const tools = indirect[`${rel} sh -c: ${w}`];
        if (tools) add(list, tools, `${rel} (sh -c ${w})`);
        else unlisted.push(`${rel} sh -c: ${w}`);
      }
    }
    for (const expr of found.indirect) {
      if (expr === 'process.execPath') continue; // this Node
      const key = `${rel} ${expr}`;
      const tools = indirect[key];
      if (tools) add(list, tools, `${rel} (${expr})`);
      else unlisted.push(key);
    }
  }
  for (const path of walk(join(repoRoot, 'test/fixtures'), /\.sh$/)) {
    const rel = relative(repoRoot, path);
    const sh = shellCommands(readFileSync(path, 'utf8'));
    add(test, sh.commands, rel);
    for (const w of sh.indirect) {
      const key = `${rel} ${w}`;
      const tools = indirect[key];
      if (tools) add(test, tools, `${rel} (${w})`);
      else unlisted.push(key);
    }
  }
  return { src, test, unlisted };
}

/** The apt_packages array of .ci/run. */
function ciPackages(): Set<string> {
  const text = readFileSync(join(repoRoot, '.ci/run'), 'utf8');
  const body = /^apt_packages=\(\n([\s\S]*?)^\)/m.exec(text);
  if (!body) throw new Error('.ci/run has no apt_packages=( … ) array');
  return new Set(
    (body[1] ?? '')
      .split('\n')
      .map((l) => l.replace(/#.*/, ''))
      .flatMap((l) => l.split(/\s+/))
      .filter(Boolean),
  );
}

const hasDpkg = spawnSync('sh', ['-c', 'command -v dpkg-query'], { encoding: 'utf8' }).status === 0;

/** Debian's Essential packages that provide tools here (every Debian has them; dpkg confirms below). */
const essential = new Set([
  'bash',
  'dash',
  'coreutils',
  'diffutils',
  'findutils',
  'grep',
  'gzip',
  'sed',
  'tar',
  'util-linux',
  'dpkg',
  'debianutils',
]);

/** The paths a tool can be found at: on PATH, in the standard folders, and each symlink step. */
function toolPaths(tool: string): string[] {
  const dirs = [
    ...(process.env.PATH ?? '').split(':').filter((d) => d.startsWith('/')),
    '/usr/bin',
    '/usr/sbin',
    '/bin',
    '/sbin',
  ];
  const starts = [...new Set(dirs.map((d) => join(d, tool)))].filter((p) => existsSync(p));
  const paths = new Set<string>();
  for (const start of starts) {
    let p = start;
    paths.add(p);
    for (let n = 0; n < 10; n++) {
      if (!lstatSync(p).isSymbolicLink()) break;
      const target = readlinkSync(p);
      p = target.startsWith('/') ? target : join(p, '..', target);
      paths.add(p);
    }
    paths.add(realpathSync(start));
  }
  // usrmerge: dpkg knows a file by the path its package ships it at
  return [...paths].flatMap((s) => [s, s.replace(/^\/usr\//, '/'), s.replace(/^\/(s?bin)\//, '/usr/$1/')]);
}

/** Which packages own each path (one dpkg-query call). */
function owners(paths: string[]): Map<string, Set<string>> {
  const r = spawnSync('dpkg-query', ['-S', ...new Set(paths)], { encoding: 'utf8' });
  const map = new Map<string, Set<string>>();
  for (const line of r.stdout.split('\n')) {
    const m = /^(.+?): (\/.*)$/.exec(line);
    if (!m) continue;
    map.set(m[2] ?? '', new Set((m[1] ?? '').split(', ').map((pkg) => pkg.replace(/:\w+$/, ''))));
  }
  return map;
}

/** Status and dependencies of packages (one dpkg-query call): installed ones only. */
function packageInfo(pkgs: string[]): Map<string, { essential: boolean; depends: Set<string> }> {
  const r = spawnSync(
    'dpkg-query',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own ${...} fields
    ['-W', '-f=${Package}\t${Status}\t${Essential}\t${Pre-Depends}, ${Depends}\n', ...new Set(pkgs)],
    { encoding: 'utf8' },
  );
  const info = new Map<string, { essential: boolean; depends: Set<string> }>();
  for (const line of r.stdout.split('\n')) {
    const [name, status, essentialField, deps] = line.split('\t');
    if (!status?.includes('install ok installed')) continue;
    const depends = new Set(
      (deps ?? '')
        .split(/[,|]/)
        .map((d) => d.trim().split(/[\s:(]/)[0] ?? '')
        .filter(Boolean),
    );
    info.set(name ?? '', { essential: essentialField === 'yes', depends });
  }
  return info;
}

describe('host tools and the packages .ci/run installs', () => {
  const { src, test, unlisted } = collect();
  const packages = ciPackages();

  it('the scan finds the calls it should (the scanner itself works)', () => {
    const names = new Set([...src, ...test].map((u) => u.tool));
    for (const t of ['make', 'virsh', 'mkfs.ext4', 'git', 'tar', 'systemd-analyze', 'qemu-system-x86_64'])
      expect(names, t).toContain(t);
    for (const t of ['debootstrap', 'mksquashfs', 'ssh-keygen', 'xmllint', 'depmod', 'flock', 'sha256sum'])
      expect(names, t).toContain(t);
    const sh = shellCommands(
      'a=$(foo x | bar) # baz\ncase $x in\nq) qux ;;\nesac\nexec 9>f\nf() { :; }\nf\ncat <<EOF\nnot-a-command\nEOF\n',
    );
    expect(sh.commands.sort()).toEqual(['bar', 'cat', 'foo', 'qux']);
  });

  it('every call with a computed command is listed in `indirect`', () => {
    expect(unlisted).toEqual([]);
  });

  it("every tool the code calls has a Debian package in src/run's providers (for 'not found' hints)", () => {
    const missing = [
      ...new Set(
        src
          .filter((u) => !notDebian.has(u.tool) && !(u.tool in providers))
          .map((u) => `${u.tool} (${u.where})`),
      ),
    ];
    expect(missing).toEqual([]);
  });

  it('every tool the tests call has a Debian package', () => {
    const missing = [
      ...new Set(
        test
          .filter((u) => !notDebian.has(u.tool) && !(u.tool in providers) && !(u.tool in testTools))
          .map((u) => `${u.tool} (${u.where})`),
      ),
    ];
    expect(missing).toEqual([]);
  });

  it("doctor's suggested packages agree with providers", () => {
    const disagree = doctorPairs()
      .filter(([tool, pkg]) => (providers[tool] ?? testTools[tool]) !== pkg)
      .map(([tool, pkg, where]) => `${where}: ${tool} -> ${pkg}, providers: ${providers[tool]}`);
    expect(disagree).toEqual([]);
  });

  it('no entry of the maps is stale', () => {
    const used = new Set([...src, ...test].map((u) => u.tool));
    const doctorTools = new Set(doctorPairs().map(([t]) => t));
    expect(Object.keys(providers).filter((t) => !used.has(t) && !doctorTools.has(t))).toEqual([]);
    expect(Object.keys(testTools).filter((t) => !used.has(t) && !(t in daemonTools))).toEqual([]);
  });

  it('.ci/run installs the package of every tool (Essential packages aside), daemon helpers included', () => {
    const all = { ...testTools, ...providers, ...daemonTools };
    const missing = Object.entries(all)
      .filter(([, pkg]) => !packages.has(pkg) && !essential.has(pkg))
      .map(([tool, pkg]) => `${tool} -> ${pkg}`);
    expect(missing).toEqual([]);
    for (const pkg of ['dnsmasq-base', 'iptables']) expect(packages).toContain(pkg);
  });

  it.skipIf(!hasDpkg)(
    'dpkg -S confirms each tool comes from its package, where the package is installed',
    () => {
      const all = { ...testTools, ...providers, ...daemonTools };
      const wrong: string[] = [];
      const unchecked: string[] = [];
      const info = packageInfo([...Object.values(all), ...essential]);
      const checked = Object.entries(all).filter(([tool, pkg]) => {
        if (info.has(pkg)) return true;
        unchecked.push(`${tool} (${pkg} not installed)`);
        return false;
      });
      const pathsOf = new Map(checked.map(([tool]) => [tool, toolPaths(tool)]));
      const owning = owners([...pathsOf.values()].flat());
      for (const [tool, pkg] of checked) {
        const paths = pathsOf.get(tool) ?? [];
        const pkgs = new Set(paths.flatMap((p) => [...(owning.get(p) ?? [])]));
        // The package owns the file, or depends on the one that does (perl on perl-base, python3 on
        // python3-minimal): the tool needs the whole package.
        const ok = pkgs.has(pkg) || [...pkgs].some((owner) => info.get(pkg)?.depends.has(owner));
        if (paths.length === 0) wrong.push(`${tool}: ${pkg} is installed but there is no ${tool}`);
        else if (!ok)
          wrong.push(
            `${tool}: ${paths.join(' ')} belong to ${[...pkgs].join(', ') || 'no package'}, not ${pkg}`,
          );
      }
      for (const pkg of essential) {
        if (info.has(pkg) && !info.get(pkg)?.essential)
          wrong.push(`${pkg} is not Essential here: list it in .ci/run`);
      }
      if (unchecked.length)
        process.stderr.write(`\n[note] host tools not checked with dpkg: ${unchecked.join(', ')}\n`);
      expect(wrong).toEqual([]);
    },
  );
});
