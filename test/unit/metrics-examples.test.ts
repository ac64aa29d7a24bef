import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ProxyMetrics } from '../../src/metrics/metrics.js';

const read = (path: string): string => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

describe('examples/ dashboard and alert rules', () => {
  it('name only metrics the proxy exports', async () => {
    const metrics = new ProxyMetrics(10);
    const exported = new Set(
      (await metrics.registry.getMetricsAsJSON()).flatMap((m) =>
        String(m.type) === 'histogram' ? [m.name, `${m.name}_bucket`, `${m.name}_count`, `${m.name}_sum`] : [m.name],
      ),
    );
    for (const file of ['examples/grafana-dashboard.json', 'examples/prometheus-alerts.yaml']) {
      const named = new Set(read(file).match(/pgtp_[a-z0-9_]+/g) ?? []);
      expect(named.size).toBeGreaterThan(5);
      expect(
        [...named].filter((name) => !exported.has(name)),
        file,
      ).toEqual([]);
    }
  });
});
