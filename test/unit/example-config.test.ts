// config/proxy.example.yaml claims every key with its default: checked against the schema, so the two cannot drift.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { configKeys, loadConfig } from '../../src/config/load.js';

const EXAMPLE = 'config/proxy.example.yaml';

/**
 * Dotted keys the example shows, set or commented out (`# issuer: …`), found by indentation: a commented key is
 * documentation of an optional key as much as a set one is.
 */
function documentedKeys(text: string): Set<string> {
  const keys = new Set<string>();
  const stack: { indent: number; name: string }[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\s*)(?:#\s*)?([A-Za-z][A-Za-z0-9]*):(?:\s|$)/.exec(line);
    if (!m) continue;
    const indent = m[1]!.length;
    while (stack.length > 0 && stack[stack.length - 1]!.indent >= indent) stack.pop();
    stack.push({ indent, name: m[2]! });
    keys.add(stack.map((s) => s.name).join('.'));
  }
  return keys;
}

function valueAt(tree: unknown, key: string): unknown {
  let node = tree;
  for (const part of key.split('.')) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

describe('config/proxy.example.yaml', () => {
  const text = readFileSync(EXAMPLE, 'utf8');
  const set = parseYaml(text) as unknown;
  const documented = documentedKeys(text);

  it('shows every key of the schema', () => {
    const missing = configKeys()
      .map((leaf) => leaf.key)
      .filter((key) => !documented.has(key));
    expect(missing).toEqual([]);
  });

  it('shows no key the schema does not have', () => {
    const known = new Set(configKeys().map((leaf) => leaf.key));
    const prefixes = new Set(
      [...known].flatMap((k) => k.split('.').map((_, i, parts) => parts.slice(0, i + 1).join('.'))),
    );
    expect([...documented].filter((key) => !prefixes.has(key))).toEqual([]);
  });

  it('sets each key that has a default to that default', () => {
    const differing = configKeys()
      .filter((leaf) => 'default' in leaf)
      .filter((leaf) => JSON.stringify(valueAt(set, leaf.key)) !== JSON.stringify(leaf.default))
      .map(
        (leaf) =>
          `${leaf.key}: example ${JSON.stringify(valueAt(set, leaf.key))}, default ${JSON.stringify(leaf.default)}`,
      );
    expect(differing).toEqual([]);
  });

  it('loads, and leaves metrics off as the schema does', () => {
    const config = loadConfig(EXAMPLE, {});
    expect(config.metrics.enabled).toBe(false);
    expect(config.metrics.port).toBe(9930);
  });
});
