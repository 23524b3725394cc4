/** The usage lines of `witness sim` (its own module so that `witness --help` does not load the simulator). */
export const SIM_USAGE = [
  'witness sim run SCENARIO --broker URL [--record FILE] [--report DIR] [--register DATA_DIR] [--mode observe|enforce] [--seed S] [--json]',
  'witness sim replay FILE --broker URL [--speed X] [--record FILE] [--report DIR] [--register DATA_DIR] [--username U --password P] [--json]',
  'witness sim check DATA_DIR --run FILE [--no-verify] [--key PUB] [--json]',
  'witness sim plan SCENARIO [--mode observe|enforce] [--seed S] [--json]',
  'witness sim register SCENARIO (--data DATA_DIR | --out FILE) [--json]',
].join('\n  ');
