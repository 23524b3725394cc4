/**
 * Child process of the crash drill: appends to the ledger of DATA_DIR as fast as it can and
 * prints "INDEX ROUND N" for every append whose promise resolved (i.e. durable under fsync
 * `batch`). The parent kills it with SIGKILL at a random moment. stdout is a pipe, and pipe
 * writes are synchronous on Linux, so a printed line was acknowledged before the kill.
 */
import { reopenTestLedger } from './ledger.js';

const [dataDir, round] = process.argv.slice(2) as [string, string];
const ledger = await reopenTestLedger(dataDir, { checkpointEveryRecords: 2000, segmentMaxBytes: 256 * 1024 });
process.stdout.write(`ready ${ledger.nextIndex}\n`);
let n = 0;
const inFlight = 64;
async function worker(): Promise<void> {
  for (;;) {
    const mine = n++;
    const { index } = await ledger.append({ v: 1, e: 'drill', round: Number(round), n: mine, pad: 'x'.repeat(200) });
    process.stdout.write(`${index} ${round} ${mine}\n`);
  }
}
await Promise.all(Array.from({ length: inFlight }, worker));
