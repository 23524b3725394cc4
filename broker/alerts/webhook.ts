/**
 * Posts a JSON body to a webhook with node's fetch: each attempt bounded by `timeoutMs`, at most
 * `retries` retries after a network error, a timeout, a 5xx, 408 or 429 (other 4xx are the
 * receiver's final word), waiting `backoffMs` × 2^k (k = 0, 1, …, capped at 30 s) between attempts.
 * It never throws: the outcome is returned, for the caller to count.
 */

export interface WebhookOptions {
  /** Per attempt, ms. Default 5,000. */
  timeoutMs?: number;
  /** Retries after the first attempt. Default 3. */
  retries?: number;
  /** First wait between attempts, ms; doubled each time. Default 500. */
  backoffMs?: number;
  headers?: Record<string, string>;
  /** Aborts the whole thing (pending waits included), e.g. when the broker stops. */
  signal?: AbortSignal;
}

export interface WebhookResult {
  ok: boolean;
  /** HTTP status of the last response, if one came. */
  status?: number;
  /** Why the last attempt failed. */
  error?: string;
  attempts: number;
}

export const WEBHOOK_DEFAULTS = { timeoutMs: 5_000, retries: 3, backoffMs: 500 } as const;
const MAX_BACKOFF_MS = 30_000;

export async function postWebhook(url: string, body: unknown, opts: WebhookOptions = {}): Promise<WebhookResult> {
  const timeoutMs = opts.timeoutMs ?? WEBHOOK_DEFAULTS.timeoutMs;
  const retries = Math.max(0, Math.floor(opts.retries ?? WEBHOOK_DEFAULTS.retries));
  const backoffMs = Math.max(0, opts.backoffMs ?? WEBHOOK_DEFAULTS.backoffMs);
  let text: string;
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return { ok: false, error: `not an http(s) URL: ${u.protocol}`, attempts: 0 };
    text = typeof body === 'string' ? body : JSON.stringify(body);
  } catch (e) {
    return { ok: false, error: `bad URL or body: ${(e as Error).message}`, attempts: 0 };
  }

  let attempts = 0;
  let last: WebhookResult = { ok: false, error: 'not attempted', attempts: 0 };
  for (;;) {
    if (opts.signal?.aborted) return { ...last, ok: false, error: 'aborted', attempts };
    attempts++;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout;
    let retryable = true;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'mqtt-witness-alerts/1', ...opts.headers },
        body: text,
        signal,
        redirect: 'error',
      });
      // Drain the body so the connection can be reused or closed.
      await res.arrayBuffer().catch(() => undefined);
      if (res.ok) return { ok: true, status: res.status, attempts };
      retryable = res.status >= 500 || res.status === 408 || res.status === 429;
      last = { ok: false, status: res.status, error: `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`, attempts };
    } catch (e) {
      const err = e as Error & { cause?: { code?: string; message?: string } };
      const why = timeout.aborted ? `timeout after ${timeoutMs} ms` : opts.signal?.aborted ? 'aborted' : `${err.message}${err.cause?.code ? ` (${err.cause.code})` : err.cause?.message ? ` (${err.cause.message})` : ''}`;
      last = { ok: false, error: why, attempts };
      if (opts.signal?.aborted) return last;
    }
    if (!retryable || attempts > retries) return last;
    const wait = Math.min(backoffMs * 2 ** (attempts - 1), MAX_BACKOFF_MS);
    if (!(await sleep(wait, opts.signal))) return { ...last, error: 'aborted', attempts };
  }
}

/** Resolves true after `ms`, or false as soon as `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve(false);
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
