/*
 * Small helpers shared by the benchmark parts: medians, number formats and Markdown tables (the
 * same text is printed and written to bench/RESULTS.md).
 */

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** A number with thousands separators and at most `digits` decimals. */
export function num(value: number, digits = 0): string {
  if (!Number.isFinite(value)) return '–';
  // -0.2 rounds to "-0": show it as 0.
  if (Math.abs(value) < 0.5 * 10 ** -digits) value = 0;
  return value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** `a / b` as `1.23×`, or `–` when it cannot be computed. */
export function ratio(a: number, b: number, digits = 2): string {
  if (!Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '–';
  return `${num(a / b, digits)}×`;
}

/** A Markdown table; numbers are right-aligned. */
export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = rows.map((r) => r.map((c) => (typeof c === 'number' ? num(c) : c)));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number' || /^[-–\d.,×%+ ]+[a-zA-Z×%]*$/.test(String(r[i]))));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (numeric[i] ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(headers), rule, ...cells.map(line)].join('\n');
}

/** The output of one part: a title, Markdown text (tables and notes), and figures for the summary. */
export interface Section {
  readonly title: string;
  readonly markdown: string;
}
