/**
 * The dashboard page (broker/http/dashboard.html): one self-contained HTML file — inline CSS and
 * JavaScript, no external URL — that the HTTP API serves without a token; the page asks for a token
 * and calls the API with it (docs/HTTP-API.md, "Dashboard").
 *
 * The build (tsc) copies only .ts files to dist/, so the page is read from the source tree: next to
 * this module first (running from source, or a copy placed beside the compiled file), then
 * dist/broker/http/dashboard.js → ../../../broker/http/dashboard.html. Read once, then cached.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { WitnessError } from '../../shared/errors.js';

const CANDIDATES = ['./dashboard.html', '../../../broker/http/dashboard.html'];

let cached: string | undefined;

/** Where the page is looked for, in order. */
export function dashboardHtmlPaths(): string[] {
  return CANDIDATES.map((rel) => fileURLToPath(new URL(rel, import.meta.url)));
}

/** The dashboard page's HTML (UTF-8). Throws WITNESS_ERR_IO naming the paths tried if it is missing. */
export function dashboardHtml(): string {
  if (cached !== undefined) return cached;
  const tried = dashboardHtmlPaths();
  for (const p of tried) {
    try {
      cached = readFileSync(p, 'utf8');
      return cached;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new WitnessError('WITNESS_ERR_IO', `dashboard page ${p} could not be read: ${(e as Error).message}`, { cause: e, details: { path: p } });
      }
    }
  }
  throw new WitnessError('WITNESS_ERR_IO', `dashboard page not found (looked for ${tried.join(' and ')}); the broker/http/dashboard.html source file must ship with the compiled code`, { details: { tried } });
}
