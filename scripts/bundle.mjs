// Bundles the compiled CLI (dist/cli/main.js and what it imports, commander
// and ini included) into one CommonJS file, dist/cli/mkt.cjs, which bin/mkt
// loads: one file to read and compile instead of some forty ES modules
// takes about 25 ms off every start.
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/cli/main.js'],
  outfile: 'dist/cli/mkt.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  // dist/cli/mkt.cjs sits as deep as the modules it replaces, so paths made from import.meta.url still hold
  define: { 'import.meta.url': '__mkt_bundle_url' },
  banner: { js: "const __mkt_bundle_url = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
});
