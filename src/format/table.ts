// Plain-text tables for terminals: aligned columns under a header and a rule (status, tenants list, tenants query).

export interface TableStyle {
  /** Between two cells of a row; default two spaces. */
  gap?: string;
  /** Between two columns' dashes in the rule under the header; default two spaces. */
  ruleGap?: string;
  /** The line under the rule when there are no rows; null for none. Default "(none)". */
  empty?: string | null;
}

/** Aligned columns under a header and a rule; "(none)" for no rows unless the style says otherwise. */
export function renderTable(header: string[], rows: Array<Array<string | number>>, style: TableStyle = {}): string {
  const { gap = '  ', ruleGap = '  ', empty = '(none)' } = style;
  const cells = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  const line = (r: string[]): string =>
    r
      .map((c, i) => c.padEnd(widths[i]!))
      .join(gap)
      .trimEnd();
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join(ruleGap), ...cells.slice(1).map(line)];
  if (rows.length === 0 && empty !== null) out.push(empty);
  return out.join('\n');
}
