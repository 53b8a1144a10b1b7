// Unit checks of the pieces: canonical msgpack edge cases, dtypes, the spec's tables against constants.js.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { decode } from '../src/msgpack.js';
import { toTyped } from '../src/reader.js';
import { encodeHeader, parseHeader } from '../src/safetensors.js';
import * as C from '../src/constants.js';

const SPEC = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'spec', 'SLDP-1.md');

function table(text, marker) {
  const lines = text.split('\n');
  const i = lines.indexOf(`<!-- table:${marker} -->`);
  assert.ok(i >= 0, marker);
  const rows = [];
  for (let j = i + 3; j < lines.length && lines[j].startsWith('|'); j++) rows.push(lines[j].split('|').slice(1, -1).map((s) => s.trim()));
  return rows;
}

test("the spec's limits, error codes and dtypes are constants.js's", async () => {
  const spec = await readFile(SPEC, 'utf8');
  for (const [name, value] of table(spec, 'limits')) assert.equal(C[name], Number(value), name);
  assert.deepEqual(table(spec, 'errors').map((r) => r[0].replace(/`/g, '')), Object.keys(C.ERROR_CODES));
  assert.deepEqual(Object.fromEntries(table(spec, 'dtypes').map((r) => [r[0], Number(r[1])])), { ...C.DTYPE_ITEMSIZE });
});

test('msgpack: 64-bit integers beyond 2^53 decode exactly as bigints; kinds are recorded', () => {
  const bytes = Uint8Array.of(0x92, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0);
  const { value, layout } = decode(bytes, 64);
  assert.equal(value[0], 2n ** 64n - 1n);
  assert.equal(value[1], 1);
  const m = layout.of(value);
  assert.deepEqual([m.childKind.get(0), m.childKind.get(1)], ['int', 'float']);
  assert.deepEqual([m.childOff.get(0), m.childOff.get(1)], [65, 74]);
});

test('msgpack: the canonical-form rules, each with its code and offset', () => {
  const cases = [
    [[0xcd, 0x00, 0x01], 'E_MSGPACK_NONCANONICAL', 0], // 1 as uint16
    [[0xd0, 0x05], 'E_MSGPACK_NONCANONICAL', 0], // positive in a signed form
    [[0xd0, 0xf0], 'E_MSGPACK_NONCANONICAL', 0], // -16 fits a negative fixint
    [[0xca, 0, 0, 0, 0], 'E_MSGPACK_TYPE', 0],
    [[0xc1], 'E_MSGPACK', 0],
    [[0xdd, 0xff, 0xff, 0xff, 0xff], 'E_MSGPACK', 0], // count larger than what remains
    [[0x82, 0xa1, 0x62, 0xc0, 0xa1, 0x61, 0xc0], 'E_MSGPACK_NONCANONICAL', 4], // b, a
    [[0x82, 0xa1, 0x61, 0xc0, 0xa1, 0x61, 0xc0], 'E_MSGPACK_DUPLICATE_KEY', 4],
    [[0x81, 0x01, 0xc0], 'E_MSGPACK_TYPE', 1],
    [[0xa2, 0xc3, 0x28], 'E_MSGPACK', 0], // invalid UTF-8
    [[0xc0, 0xc0], 'E_MSGPACK', 1], // trailing value
  ];
  for (const [bytes, code, off] of cases) {
    assert.throws(() => decode(Uint8Array.from(bytes), 100), { code, offset: 100 + off }, bytes.join(','));
  }
});

test('dtypes: F16 and BF16 convert exactly to float32, I64 to bigints', () => {
  assert.deepEqual([...toTyped(Uint8Array.of(0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00), 'F16')], [1, -2, 2 ** -24]);
  assert.deepEqual([...toTyped(Uint8Array.of(0x80, 0x3f, 0x49, 0x40), 'BF16')], [1, 3.140625]);
  assert.deepEqual([...toTyped(Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), 'I64')], [-1n]);
});

test('safetensors: the canonical header round-trips, and names are escaped as json.dumps(ensure_ascii=False)', () => {
  const t = new Map([['a"\\/ü', { dtype: 'F32', shape: [2] }], ['b', { dtype: 'U8', shape: [] }]]);
  const h = encodeHeader(t);
  assert.equal(h.length % 8, 0);
  const json = new TextDecoder().decode(h.subarray(8)).trimEnd();
  assert.equal(json, '{"a\\"\\\\/ü":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[],"data_offsets":[8,9]}}');
  const payload = new Uint8Array(h.length + 9);
  payload.set(h);
  const { entries, dataStart } = parseHeader(payload, payload.length, 1000, false);
  assert.equal(dataStart, h.length);
  assert.deepEqual(entries.map((e) => [e.name, e.begin, e.end]), [['a"\\/ü', 0, 8], ['b', 8, 9]]);
  payload[h.length - 1] = 0x41; // not a space: not JSON any more
  assert.throws(() => parseHeader(payload, payload.length, 1000, false), { code: 'E_ST_HEADER', offset: 1008 });
});

test('msgpack: a value missing altogether is reported where it would start (spec section 4)', () => {
  assert.throws(() => decode(Uint8Array.of(0x92, 0xa1, 0x61), 64), { code: 'E_MSGPACK', offset: 67 }); // element
  assert.throws(() => decode(Uint8Array.of(0x81, 0xa1, 0x61), 64), { code: 'E_MSGPACK', offset: 67 }); // value
  // key: map of 2 pairs whose first value takes the bytes the count check left for the second pair
  assert.throws(() => decode(Uint8Array.of(0x82, 0xa1, 0x61, 0xa3, 0x78, 0x79, 0x7a), 64), { code: 'E_MSGPACK_TYPE', offset: 71 });
});

test('zstd: a window above 2^27 is E_ZSTD at the payload start, before any allocation (spec 6.1)', async () => {
  const { frameHeader } = await import('../src/zstd.js');
  assert.throws(() => frameHeader(Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd, 0x00, 18 << 3), 10, 500), { code: 'E_ZSTD', offset: 500 });
  assert.equal(frameHeader(Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd, 0x00, 17 << 3), 10, 500).windowSize, 2 ** 27);
});
