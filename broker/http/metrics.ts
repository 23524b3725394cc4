/**
 * Prometheus text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format): for each
 * metric family one `# HELP` line, one `# TYPE` line, then its samples `name{label="value",…} value`.
 * Label values escape `\` `"` and newline; HELP text escapes `\` and newline.
 */

export type MetricType = 'counter' | 'gauge';
export type Labels = Record<string, string>;
export type Sample = [labels: Labels | undefined, value: number];

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

export class Exposition {
  readonly #lines: string[] = [];
  readonly #names = new Set<string>();

  /** Adds a family. Counters are named `…_total` by convention (checked). A family without samples still gets HELP and TYPE. */
  family(name: string, type: MetricType, help: string, samples: Sample[]): this {
    if (!NAME.test(name) || this.#names.has(name)) throw new Error(`metric name ${name}: invalid or repeated`);
    if (type === 'counter' && !name.endsWith('_total')) throw new Error(`counter ${name} must end in _total`);
    this.#names.add(name);
    this.#lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) {
      const entries = Object.entries(labels ?? {});
      for (const [k] of entries) if (!LABEL.test(k) || k.startsWith('__')) throw new Error(`label name ${k}: invalid`);
      const l = entries.length ? `{${entries.map(([k, v]) => `${k}="${escapeLabelValue(v)}"`).join(',')}}` : '';
      this.#lines.push(`${name}${l} ${formatValue(value)}`);
    }
    return this;
  }

  text(): string {
    return this.#lines.join('\n') + '\n';
  }
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
