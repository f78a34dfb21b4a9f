// Starts `usher demo` on free ports with its own data folder, reads the URLs it prints,
// and stops it with Ctrl-C (SIGINT) the way a person would.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = process.env.USHER_BIN || join(ROOT, 'target', 'release', 'usher');

/**
 * Start the demo. `args` are extra flags (`--no-script`, `--github-jit`).
 * Resolves once the banner is printed, with the URLs and folders it names.
 */
export async function startDemo(args = []) {
  const data = mkdtempSync(join(tmpdir(), 'usher-e2e-'));
  const child = spawn(
    BIN,
    ['demo', '--data', data, '--port', '0', '--app-port', '0', '--google-port', '0', '--github-port', '0', ...args],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, USHER_LOG: process.env.USHER_LOG || 'warn' } },
  );
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const banner = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the demo did not start in 60 s\n${out}\n${err}`)), 60_000);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('Press Ctrl-C to stop.')) {
        clearTimeout(timer);
        resolve(out);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the demo exited (${code}) before it was ready\n${out}\n${err}`));
    });
  });
  const field = (label) => {
    const m = banner.match(new RegExp(`^\\s*${label}:\\s+(\\S.*)$`, 'm'));
    if (!m) throw new Error(`the banner has no "${label}" line:\n${banner}`);
    return m[1].trim().split(' (')[0];
  };
  const demo = {
    thrift: field('Open Thrift').replace(/\/$/, ''),
    usher: field('Usher \\(the IdP\\)'),
    google: field('Google stand-in'),
    github: field('GitHub stand-in'),
    outbox: field('Email codes land in'),
    data,
    output: () => out,
    /** `usher users list` against this demo, with the credentials the banner prints. */
    usersList() {
      const line = banner.match(/^Accounts in Usher:\s+(.*) cargo run/m);
      if (!line) throw new Error(`the banner has no "Accounts in Usher" line:\n${banner}`);
      const env = { ...process.env };
      for (const pair of line[1].trim().split(/\s+/)) {
        const [k, ...v] = pair.split('=');
        env[k] = v.join('=');
      }
      return execFileSync(BIN, ['users', 'list'], { env, encoding: 'utf8' });
    },
    /** The six-digit code of the newest code mail in the outbox, waiting for one to arrive. */
    async emailCode(after = 0) {
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline) {
        let files = [];
        try {
          files = readdirSync(demo.outbox).filter((f) => f.endsWith('.eml')).sort();
        } catch { /* not created yet */ }
        // Newest first, skipping other mail (a notice of a change carries no code).
        for (const name of files.slice(after).reverse()) {
          const text = readFileSync(join(demo.outbox, name), 'utf8');
          const m = text.match(/^\s*(\d{6})\s*$/m);
          if (m) return m[1];
        }
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`no code arrived in ${demo.outbox}`);
    },
    /** Ctrl-C, then wait for a clean exit; the data folder is removed. */
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGINT');
        const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 15_000))]);
        if (code === 'timeout') child.kill('SIGKILL');
        demo.exitCode = code;
      }
      rmSync(data, { recursive: true, force: true });
    },
  };
  return demo;
}
