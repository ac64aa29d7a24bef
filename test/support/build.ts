// Builds dist/ once per test run, for the test files that run the CLI as users do (the compiled build, a process of
// its own). Files run in parallel: one builds under a lock while the others wait, so none starts a process from a
// half-written dist/.
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const LOCK = join(ROOT, '.tmp', 'build.lock');
const STAMP = join(ROOT, '.tmp', 'build.stamp');
/** A lock older than this was left by a run that died mid-build. */
const STALE_LOCK_MS = 5 * 60_000;

export const DIST_CLI = join(ROOT, 'dist', 'cli', 'main.js');

export async function buildDist(): Promise<void> {
  // Test files are forks of the one vitest process: its pid names the run.
  const runId = String(process.ppid);
  mkdirSync(join(ROOT, '.tmp'), { recursive: true });
  for (;;) {
    if (readStamp() === runId) return;
    try {
      mkdirSync(LOCK);
    } catch {
      if (Date.now() - lockTime() > STALE_LOCK_MS) rmSync(LOCK, { recursive: true, force: true });
      await new Promise((resolve) => setTimeout(resolve, 250));
      continue;
    }
    try {
      if (readStamp() !== runId) {
        await run('npm', ['run', 'build', '--silent'], { cwd: ROOT });
        writeFileSync(STAMP, runId);
      }
    } finally {
      rmSync(LOCK, { recursive: true, force: true });
    }
    return;
  }
}

function readStamp(): string | null {
  try {
    return readFileSync(STAMP, 'utf8');
  } catch {
    return null;
  }
}

function lockTime(): number {
  try {
    return statSync(LOCK).mtimeMs;
  } catch {
    return Date.now();
  }
}
