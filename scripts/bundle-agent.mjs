#!/usr/bin/env node
// Builds the one-file agent: dist/witness-agent.mjs, the `witness-agent` command with every
// dependency inside, run with plain `node` (>= 20.12) and no node_modules.
//
//   npm run bundle                                   → dist/witness-agent.mjs
//   node scripts/bundle-agent.mjs --outfile PATH     → elsewhere (tests)
//
// esbuild bundles the TypeScript sources directly (agent/cli/witness-agent.ts and what it
// imports), so `tsc` is not needed first. The bundle includes ntp-time-sync, licensed GPL-3.0:
// the bundle as a whole is therefore distributed under GPL-3.0 terms, which its banner states,
// with the list of every package inside and its licence (docs/DEPLOY-AGENT.md, "Licensing").
import { build } from 'esbuild';
import { readFileSync, writeFileSync, mkdirSync, chmodSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parseArgs } from 'node:util';

const root = new URL('..', import.meta.url).pathname;
const { values } = parseArgs({ options: { outfile: { type: 'string' }, quiet: { type: 'boolean' } }, strict: true });
const outfile = values.outfile ?? join(root, 'dist', 'witness-agent.mjs');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

const result = await build({
  absWorkingDir: root,
  entryPoints: ['agent/cli/witness-agent.ts'],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20.12',
  write: false,
  outfile,
  metafile: true,
  minifySyntax: true,
  minifyWhitespace: true,
  legalComments: 'eof',
  logLevel: 'warning',
  // MQTT.js and other CommonJS packages call require() for Node built-ins; an ES module has no
  // require, so give the bundle one.
  banner: { js: "import { createRequire as __witnessCreateRequire } from 'node:module'; const require = __witnessCreateRequire(import.meta.url);" },
});

// Every npm package inside the bundle, with its licence, from the files esbuild used.
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const parts = input.split(/[\\/]/);
  const at = parts.lastIndexOf('node_modules');
  if (at < 0) continue;
  const name = parts[at + 1].startsWith('@') ? `${parts[at + 1]}/${parts[at + 2]}` : parts[at + 1];
  const dir = join(root, ...parts.slice(0, at + 1), ...name.split('/'));
  if (packages.has(name)) continue;
  const p = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  packages.set(name, `${name}@${p.version} (${typeof p.license === 'string' ? p.license : (p.license?.type ?? 'see its package')})`);
}
const gpl = [...packages.values()].filter((p) => /GPL/.test(p));
const source = pkg.repository?.url ?? pkg.homepage ?? `the ${pkg.name} source repository this bundle was built from (agent/, shared/, broker/ and scripts/bundle-agent.mjs)`;

const notice = [
  '/*!',
  ` * witness-agent ${pkg.version}: the Witness device agent (${pkg.name}) as one file. Run: node witness-agent.mjs --help`,
  ' *',
  ` * LICENSING. This bundle includes ${gpl.join(', ') || 'ntp-time-sync (GPL-3.0)'}. The bundle as a whole is`,
  ' * therefore distributed under the terms of the GNU General Public License, version 3',
  ' * (https://www.gnu.org/licenses/gpl-3.0.html). The Witness code in it is Apache-2.0 (compatible',
  ` * with GPL-3.0); its complete corresponding source is ${source}.`,
  ' *',
  ' * Packages bundled:',
  ...[...packages.values()].sort().map((p) => ` *   ${p}`),
  ' */',
].join('\n');

const out = result.outputFiles.find((f) => f.path.endsWith('.mjs') || f.path === outfile) ?? result.outputFiles[0];
let code = out.text;
const shebang = code.startsWith('#!') ? code.slice(0, code.indexOf('\n') + 1) : '#!/usr/bin/env node\n';
if (code.startsWith('#!')) code = code.slice(shebang.length);
const text = `${shebang}${notice}\n${code}`;
mkdirSync(dirname(outfile), { recursive: true });
writeFileSync(outfile, text);
chmodSync(outfile, 0o755);

const bytes = Buffer.byteLength(text);
const gz = gzipSync(text).length;
if (!values.quiet) {
  const shown = relative(process.cwd(), outfile).startsWith('..') ? outfile : relative(process.cwd(), outfile).split(sep).join('/');
  console.log(`${shown}: ${bytes.toLocaleString('en')} bytes (${(bytes / 1024).toFixed(0)} KiB; gzip ${(gz / 1024).toFixed(0)} KiB), ${packages.size} npm packages inside`);
  if (gpl.length > 0) console.log(`  includes ${gpl.join(', ')}: the bundle is distributed under GPL-3.0 terms (see its banner)`);
}
