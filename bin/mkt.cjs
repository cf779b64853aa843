#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS node
// mkt's CLI, which bin/mkt runs through dist/host/mkt-start (see mkt-start.c);
// runnable on its own too. (env -u: Node parses every certificate
// NODE_EXTRA_CA_CERTS names before it runs a line of JS, 30-40 ms with a
// distribution bundle, and mkt makes no TLS connection; -S needs GNU env,
// coreutils 8.30 or later)
//
// Runs the bundled CLI (npm run build makes dist/cli/mkt.cjs) with V8's code
// cache: the bytecode of the last start, kept in mkt's cache directory and
// keyed by the bundle's size and mtime, so a start compiles almost nothing.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const { wrap } = require('node:module');

const bundle = path.join(__dirname, '..', 'dist', 'cli', 'mkt.cjs');
let source;
let st;
try {
  source = fs.readFileSync(bundle, 'utf8');
  st = fs.statSync(bundle);
} catch (err) {
  process.stderr.write(`mkt: cannot load ${bundle} (${err.message}): run 'npm ci && npm run build' in the mkt checkout\n`);
  process.exit(125);
}
const home = process.env.HOME || require('node:os').homedir();
const xdgCache = process.env.XDG_CACHE_HOME;
const cacheDir = path.join(xdgCache && xdgCache.startsWith('/') ? xdgCache : path.join(home, '.cache'), 'mkt');
// one cache per subcommand: each compiles the functions its own path runs
const sub = ['run', 'kconfig'].includes(process.argv[2]) ? process.argv[2] : 'other';
const build = `cli-${process.version}-${st.size}-${Math.round(st.mtimeMs)}-`;
const cacheName = `${build}${sub}.v8`;
// the file is a SHA-1 of the bytecode, then the bytecode: V8 trusts what it is given, so check it here
const digest = (data) => require('node:crypto').createHash('sha1').update(data).digest();
let cached;
try {
  // without blocking, and only a regular file: a FIFO or a device standing there is no cache
  const fd = fs.openSync(path.join(cacheDir, cacheName), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    const file = fs.fstatSync(fd).isFile() ? fs.readFileSync(fd) : Buffer.alloc(0);
    if (file.length > 20 && digest(file.subarray(20)).equals(file.subarray(0, 20))) cached = file.subarray(20);
  } finally {
    fs.closeSync(fd);
  }
} catch {
  /* first start of this build: compile, and keep the result below */
}
const script = new vm.Script(wrap(source), { filename: bundle, cachedData: cached });
if (!cached || script.cachedDataRejected) {
  process.once('exit', () => {
    // best effort: a cache that cannot be written only costs the next start some milliseconds
    try {
      // only into a cache directory mkt made (and checked) itself: `mkt run` does
      if (!fs.statSync(cacheDir).isDirectory()) return;
      for (const old of fs.readdirSync(cacheDir)) {
        if (/^cli-.*\.v8$/.test(old) && !old.startsWith(build)) fs.rmSync(path.join(cacheDir, old), { force: true });
      }
      const data = script.createCachedData();
      const tmp = path.join(cacheDir, `.${cacheName}.${process.pid}`);
      fs.writeFileSync(tmp, Buffer.concat([digest(data), data]));
      fs.renameSync(tmp, path.join(cacheDir, cacheName));
    } catch {
      /* see above */
    }
  });
}
const mod = { exports: {} };
script.runInThisContext()(mod.exports, require, mod, bundle, path.dirname(bundle));
