#!/usr/bin/env node
// Where the proxy's CPU goes, from a `node --cpu-prof` profile: self time grouped by what the code does.
// node bench/profile-share.mjs FILE.cpuprofile   (profiles from e.g. `node --cpu-prof bench/quick-ab.mjs`)
import { readFileSync } from 'node:fs';

/** First match wins: a frame's self time is charged to the group of its own code, or of its nearest caller that has one. */
const GROUPS = [
  ['guard (src/guard, libpg-query)', /\/(dist|src)\/guard\/|libpg-query/],
  [
    'audit (src/audit, pino)',
    /\/(dist|src)\/audit\/|node_modules\/(pino|sonic-boom|fast-redact|quick-format|on-exit|thread-stream|safe-stable)/,
  ],
  ['statement tracking', /statement-tracker/],
  ['metrics (prom-client)', /\/(dist|src)\/metrics\/|prom-client/],
  ['proxy protocol code (src)', /\/(dist|src)\/(frontend|backend|protocol|net)\//],
];

const profile = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const groupOf = new Map();
function group(id) {
  if (groupOf.has(id)) return groupOf.get(id);
  const node = byId.get(id);
  const url = node.callFrame.url;
  let g = GROUPS.find(([, re]) => re.test(url))?.[0];
  if (g === undefined) {
    const name = node.callFrame.functionName;
    if (name === '(garbage collector)') g = 'garbage collection';
    else if (name === '(idle)' || name === '(program)' || name === '(root)') g = name;
    else if (parent.has(id)) g = group(parent.get(id));
    else g = 'other';
  }
  groupOf.set(id, g);
  return g;
}
const self = new Map();
const dt = profile.timeDeltas;
for (let i = 0; i < profile.samples.length; i++) {
  const g = group(profile.samples[i]);
  self.set(g, (self.get(g) ?? 0) + (dt[i] ?? 0));
}
const busy = [...self].filter(([g]) => g !== '(idle)').reduce((s, [, v]) => s + v, 0);
console.log(`busy ${(busy / 1e6).toFixed(2)} s of ${(profile.endTime - profile.startTime) / 1e6} s`);
for (const [g, us] of [...self].sort((a, b) => b[1] - a[1])) {
  if (g === '(idle)') continue;
  console.log(
    `${g.padEnd(40)} ${(us / 1e3).toFixed(0).padStart(7)} ms  ${((100 * us) / busy).toFixed(1).padStart(5)}%`,
  );
}
