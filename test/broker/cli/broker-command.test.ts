/**
 * `witness broker` argument errors: exit 2 with a message naming the flag and the range, before
 * anything is created.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../helpers/tmp.js';
import { runWitness } from '../../helpers/broker-process.js';

test('--verify-threads out of range or not a count: exit 2, says what and the range', async (t) => {
  const dir = tempDir(t);
  const data = join(dir, 'data');
  const big = await runWitness(['broker', '--data', data, '--port', '0', '--verify-threads', '300'], 30_000);
  assert.equal(big.code, 2, big.stderr);
  assert.match(big.stderr, /--verify-threads 300 is too many \(0–256; 0 = verify on the event loop\)/);
  const word = await runWitness(['broker', '--data', data, '--port', '0', '--verify-threads', 'many'], 30_000);
  assert.equal(word.code, 2, word.stderr);
  assert.match(word.stderr, /--verify-threads/);
  assert.equal(existsSync(data), false, 'nothing created');
});
