#!/usr/bin/env node
// The `witness-agent` bin. Everything is in main.ts, which tests import without running it.
import { main } from './main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`internal error (please report it): ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 2;
  },
);
