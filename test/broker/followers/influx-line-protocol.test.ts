import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeLine, escapeKey, escapeMeasurement, quoteString, int, float, str, bool } from '../../../broker/followers/line-protocol.js';
import { pointTimestamp, recordLine, recordPoint, MAX_STRING_FIELD } from '../../../broker/followers/influx.js';
import { isWitnessError } from '../../../shared/errors.js';

// Expected lines are written by hand from the spec
// (https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/#special-characters).

test('line protocol: measurement, tags, fields of each type, timestamp', () => {
  assert.equal(encodeLine({ measurement: 'witness', fields: { i: int(7) } }), 'witness i=7i');
  assert.equal(
    encodeLine({
      measurement: 'witness',
      tags: { node: 'n1', e: 'publish' },
      fields: { i: int(42), late: float(1.5), dt: float(1795446802094), ok: bool(true), no: bool(false), c: str('dev-1') },
      timestamp: 1795446802094000042n,
    }),
    'witness,e=publish,node=n1 i=42i,late=1.5,dt=1795446802094,ok=true,no=false,c="dev-1" 1795446802094000042',
  );
  // Integers: the i suffix, signed 64 bits, bigints too.
  assert.equal(encodeLine({ measurement: 'm', fields: { a: int(-3), b: int(0), c: int(9223372036854775807n), d: int(-9223372036854775808n) } }), 'm a=-3i,b=0i,c=9223372036854775807i,d=-9223372036854775808i');
  // Floats: shortest round-trip decimal; exponent form is valid line protocol.
  assert.equal(encodeLine({ measurement: 'm', fields: { a: float(-2.5), b: float(1e21), c: float(1.5e-7), d: float(5) } }), 'm a=-2.5,b=1e+21,c=1.5e-7,d=5');
  // Timestamps: bigint, safe number or digit string, exactly.
  assert.equal(encodeLine({ measurement: 'm', fields: { a: int(1) }, timestamp: 1 }), 'm a=1i 1');
  assert.equal(encodeLine({ measurement: 'm', fields: { a: int(1) }, timestamp: '1795446802094000042' }), 'm a=1i 1795446802094000042');
  // Tags sorted by key; undefined and empty tag values and undefined fields left out.
  assert.equal(encodeLine({ measurement: 'm', tags: { z: '1', a: '2', m: undefined, e: '' }, fields: { b: int(1), x: undefined, a: int(2) } }), 'm,a=2,z=1 b=1i,a=2i');
});

test('line protocol: escapes spaces, commas, equals, quotes, backslashes and newlines where the spec says', () => {
  // Measurement: comma and space.
  assert.equal(escapeMeasurement('my measurement,x=y'), 'my\\ measurement\\,x=y');
  // Tag keys, tag values, field keys: comma, equals, space.
  assert.equal(escapeKey('a b,c=d'), 'a\\ b\\,c\\=d');
  // String field values: double quote and backslash; LF and CR as \n and \r (never raw).
  assert.equal(quoteString('say "hi"'), '"say \\"hi\\""');
  assert.equal(quoteString('C:\\dir\\'), '"C:\\\\dir\\\\"');
  assert.equal(quoteString('line1\nline2\r\n'), '"line1\\nline2\\r\\n"');
  assert.equal(quoteString('spaces, commas=equals'), '"spaces, commas=equals"');
  assert.equal(quoteString(''), '""');
  assert.equal(quoteString('ünïcødé ✓'), '"ünïcødé ✓"');
  assert.equal(
    encodeLine({
      measurement: 'wit ness,x',
      tags: { 'tag key': 'v,1', 'k=2': 'a b=c' },
      fields: { 'f,1': str('a "b" \\c\nd'), 'f 2': int(1), 'f=3': bool(true) },
      timestamp: 5n,
    }),
    'wit\\ ness\\,x,k\\=2=a\\ b\\=c,tag\\ key=v\\,1 f\\,1="a \\"b\\" \\\\c\\nd",f\\ 2=1i,f\\=3=true 5',
  );
  // One point is one line, whatever the strings hold.
  const line = encodeLine({ measurement: 'm', fields: { s: str('a\nb\rc\n') } });
  assert.ok(!/[\n\r]/.test(line));
});

test('line protocol: what InfluxDB versions read differently, or not at all, is refused', () => {
  const refused = (f: () => unknown, re: RegExp): void => {
    assert.throws(f, (e: unknown) => isWitnessError(e, 'WITNESS_ERR_INVALID_ARGUMENT') && re.test((e as Error).message));
  };
  refused(() => escapeKey('a\\b'), /backslash/);
  refused(() => escapeMeasurement('m\n'), /newline/);
  refused(() => encodeLine({ measurement: 'm', tags: { t: 'x\\' }, fields: { a: int(1) } }), /tag value/);
  refused(() => encodeLine({ measurement: '', fields: { a: int(1) } }), /measurement/);
  refused(() => encodeLine({ measurement: 'm', fields: {} }), /no field/);
  refused(() => encodeLine({ measurement: 'm', fields: { a: undefined } }), /no field/);
  refused(() => encodeLine({ measurement: 'm', fields: { time: int(1) } }), /time/);
  refused(() => encodeLine({ measurement: 'm', tags: { time: 'x' }, fields: { a: int(1) } }), /time/);
  refused(() => encodeLine({ measurement: 'm', fields: { a: int(1.5) } }), /64-bit integer/);
  refused(() => encodeLine({ measurement: 'm', fields: { a: int(2 ** 60) } }), /64-bit integer/);
  refused(() => encodeLine({ measurement: 'm', fields: { a: int(2n ** 63n) } }), /64-bit integer/);
  refused(() => encodeLine({ measurement: 'm', fields: { a: float(Number.NaN) } }), /finite/);
  refused(() => encodeLine({ measurement: 'm', fields: { a: float(Number.POSITIVE_INFINITY) } }), /finite/);
  refused(() => encodeLine({ measurement: 'm', fields: { a: int(1) }, timestamp: 2 ** 60 }), /safe integer/);
  refused(() => encodeLine({ measurement: 'm', fields: { a: int(1) }, timestamp: '12a' }), /not an integer/);
  refused(() => encodeLine({ measurement: 'm', fields: { a: { type: 'string', value: 5 } as never } }), /string/);
});

test('point schema: tags from closed sets only, client ids and topics as fields, time carries the index', () => {
  const t = 1_795_446_802_094;
  const rec = {
    index: 1_234_567,
    record: {
      i: 1_234_567,
      v: 1,
      e: 'publish',
      t,
      u: 3,
      n: 'node-a',
      s: 's1',
      c: 'dev 1,"x"=\\',
      id: 'device:d1+abc',
      a: '127.0.0.1:5555',
      topic: 'devices/d1/t\nx',
      q: 1,
      r: false,
      z: 12,
      h: 'hash',
      acl: 'allow',
      env: 'gap',
      gap: 2,
      why: 'missing 2',
      seq: 9,
      dt: t - 1500,
      late: 1499.5,
      actor: 'client',
      ok: false,
    },
  };
  assert.equal(
    recordLine(rec, { nodeId: 'node-a' }),
    'witness,acl=allow,actor=client,e=publish,env=gap,node=node-a,ok=false,q=1 ' +
      'i=1234567i,c="dev 1,\\"x\\"=\\\\",id="device:d1+abc",topic="devices/d1/t\\nx",z=12i,seq=9i,gap=2i,late=1499.5,dt=1795446800594,skew=-1500,h="hash",a="127.0.0.1:5555",why="missing 2",count=1i ' +
      '1795446802094234567',
  );
  // Anything outside the closed sets is `other`; non-string values of string fields are JSON; numbers of the wrong kind are left out.
  const odd = recordPoint({ index: 3, record: { e: 'brand-new-event', t, env: 'weird', acl: 'maybe', q: 128, actor: 'alien', ok: 'yes', id: { k: 'x' }, why: 4, z: 'big', late: 'soon' } }, { nodeId: 'n', measurement: 'm2' });
  assert.deepEqual(odd.tags, { e: 'other', node: 'n', env: 'other', acl: 'other', q: 'other', ok: undefined, actor: 'other' });
  assert.deepEqual(odd.fields['id'], str('{"k":"x"}'));
  assert.deepEqual(odd.fields['why'], str('4'));
  assert.equal(odd.fields['z'], undefined);
  assert.equal(odd.fields['late'], undefined);
  assert.equal(odd.measurement, 'm2');
  // Long strings are cut.
  const long = recordPoint({ index: 0, record: { e: 'publish', t, topic: 'x'.repeat(MAX_STRING_FIELD + 10) } }, { nodeId: 'n' });
  const topic = long.fields['topic'] as { value: string };
  assert.equal(topic.value.length, MAX_STRING_FIELD);
  assert.ok(topic.value.endsWith('…'));
  // A checkpoint record (written by the ledger) has no client: only e, node, i, count.
  assert.equal(recordLine({ index: 10, record: { i: 10, v: 1, e: 'checkpoint', t, cp: { n: 1, size: 10, root: 'x' } } }, { nodeId: 'n' }), 'witness,e=checkpoint,node=n i=10i,count=1i 1795446802094000010');
});

test('point time: t ms × 10^6 + index mod 10^6, exact beyond 2^53', () => {
  assert.equal(pointTimestamp(1_795_446_802_094, 0), 1_795_446_802_094_000_000n);
  assert.equal(pointTimestamp(1_795_446_802_094, 999_999), 1_795_446_802_094_999_999n);
  assert.equal(pointTimestamp(1_795_446_802_094, 1_000_001), 1_795_446_802_094_000_001n);
  // Same ms, consecutive records: distinct times.
  assert.notEqual(pointTimestamp(5, 41), pointTimestamp(5, 42));
  assert.equal(pointTimestamp(undefined, 7), 7n);
  assert.equal(pointTimestamp(12.9, 7), 12_000_007n);
});
