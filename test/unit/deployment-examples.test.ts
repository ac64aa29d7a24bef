// examples/kubernetes: each proxy config a ConfigMap ships is one the proxy accepts, and the probes name real endpoints.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { validateConfig } from '../../src/config/load.js';

const DIR = 'examples/kubernetes';

interface Doc {
  kind?: string;
  data?: Record<string, string>;
}

const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml'));
const docsOf = (file: string): Doc[] =>
  parseAllDocuments(readFileSync(join(DIR, file), 'utf8')).map((d) => d.toJS() as Doc);

describe('examples/kubernetes', () => {
  it('has the sidecar and the shared tier', () => {
    expect(files.sort()).toEqual(['shared-tier.yaml', 'sidecar.yaml']);
  });

  for (const file of files) {
    it(`${file}: its proxy config validates, with the enterprise upstream`, () => {
      const maps = docsOf(file).filter((d) => d.kind === 'ConfigMap');
      expect(maps).toHaveLength(1);
      const raw = parseAllDocuments(maps[0]!.data!['proxy.yaml']!)[0]!.toJS() as Record<string, unknown>;
      const config = validateConfig(raw);
      expect(Object.keys(config.upstreams)).toEqual(['enterprise']);
      expect(config.tenancy.registry.enabled).toBe(true);
      expect(config.metrics.enabled).toBe(true);
    });

    it(`${file}: probes use /readyz and /healthz on the metrics port`, () => {
      const text = readFileSync(join(DIR, file), 'utf8');
      expect(text).toMatch(/readinessProbe:\s+httpGet: \{ path: \/readyz, port: metrics \}/);
      expect(text).toMatch(/livenessProbe:\s+httpGet: \{ path: \/healthz, port: metrics \}/);
    });
  }
});
