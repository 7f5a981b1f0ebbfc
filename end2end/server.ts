// Starting and stopping the release server binary for the tests. The server is started directly,
// not through `cargo leptos serve`, so that the tests own its pid and port.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, openSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const root = resolve(__dirname, '..');

export function serverBinary(): string {
  const candidates = [
    process.env.VESTIGE_SERVER_BIN,
    join(process.env.CARGO_TARGET_DIR ?? join(root, 'target'), 'server-release', 'vestige'),
  ].filter((p): p is string => !!p);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(`release server not built: looked for ${candidates.join(', ')}; run 'cargo leptos build --release' first`);
  }
  return found;
}

export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const probe = createServer();
    probe.once('error', fail);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => ok(port));
    });
  });
}

export interface Running {
  pid: number;
  baseURL: string;
  dataDir: string;
  logFile: string;
}

/** Starts the server and resolves once /health answers. */
export async function startServer(opts: { port?: number; dataDir?: string } = {}): Promise<Running> {
  const port = opts.port ?? (await freePort());
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'vestige-e2e-'));
  const logFile = join(dataDir, `server-${port}-${Date.now()}.log`);
  const log = openSync(logFile, 'a');
  const child = spawn(serverBinary(), [
    '--bind', `127.0.0.1:${port}`,
    '--data-dir', dataDir,
    '--site-root', process.env.VESTIGE_SITE_ROOT ?? join(root, 'target', 'site'),
    // The suites create rooms from one address far faster than people do.
    '--rooms-per-hour', '100000',
  ], { stdio: ['ignore', log, log], detached: false });
  if (!child.pid) throw new Error('could not start the server');
  child.unref();
  const baseURL = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}; see ${logFile}`);
    try {
      const res = await fetch(`${baseURL}/health`);
      if (res.ok) return { pid: child.pid, baseURL, dataDir, logFile };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  process.kill(child.pid, 'SIGKILL');
  throw new Error(`server did not answer /health within 30 s; see ${logFile}`);
}

export function stopServer(pid: number, signal: NodeJS.Signals = 'SIGTERM'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}
