// CPU accounting from /proc, shared by the benches: clock ticks (10 ms) of a process, and of a process tree.
import { readdirSync, readFileSync } from 'node:fs';

export function readStat(pid) {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = text.slice(text.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
  return {
    ppid: Number(f[1]),
    utime: Number(f[11]),
    stime: Number(f[12]),
    cutime: Number(f[13]),
    cstime: Number(f[14]),
  };
}

/**
 * A process tree's CPU: the root's own time, its reaped children's (cutime/cstime) and every live child's — all of
 * PostgreSQL's server processes under the postmaster, or a proxy primary and its workers. A child exiting between
 * the two reads would be lost or counted twice, so read until two snapshots 25 ms apart agree on the set of children
 * and the reaped total (backends of a finished direct run take a few ms to go).
 */
export async function treeCpuTicks(rootPid) {
  const snapshot = () => {
    const pm = readStat(rootPid);
    const kids = new Map();
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const s = readStat(entry);
        if (s.ppid === rootPid) kids.set(entry, s.utime + s.stime);
      } catch {
        // exited meanwhile
      }
    }
    return {
      reaped: pm.cutime + pm.cstime,
      total: pm.utime + pm.stime + pm.cutime + pm.cstime + [...kids.values()].reduce((a, b) => a + b, 0),
      pids: [...kids.keys()].sort().join(','),
    };
  };
  let prev = snapshot();
  for (let i = 0; i < 80; i++) {
    await new Promise((r) => setTimeout(r, 25));
    const next = snapshot();
    if (next.pids === prev.pids && next.reaped === prev.reaped) return next.total;
    prev = next;
  }
  return prev.total;
}
