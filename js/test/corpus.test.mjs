// sldp-js against the conformance corpus, in process: every case's verdict, code and offset; every
// valid file's manifest and tensors against its sidecar; laziness (open reads header + manifest only).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import { openPath } from '../src/node.js';
import { BytesSource, openSldp, SldpFormatError, toJsonText } from '../src/index.js';

const CORPUS = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'spec', 'conformance');
const index = JSON.parse(await readFile(join(CORPUS, 'index.json'), 'utf8'));

test('the corpus has valid and invalid cases', () => {
  assert.ok(index.cases.filter((c) => c.expect === 'valid').length >= 5);
  assert.ok(index.cases.filter((c) => c.expect === 'invalid').length >= 90);
});

for (const c of index.cases) {
  test(`corpus ${c.file}`, async () => {
    const path = join(CORPUS, c.file);
    if (c.expect === 'invalid') {
      await assert.rejects(async () => {
        const f = await openPath(path);
        try { await f.verify(); } finally { await f.close(); }
      }, (e) => {
        assert.ok(e instanceof SldpFormatError, `not an SldpFormatError: ${e}`);
        assert.equal(`${e.code} @ ${e.offset}`, `${c.code} @ ${c.offset}`, e.message);
        return true;
      });
      return;
    }
    const sidecar = JSON.parse(await readFile(join(CORPUS, c.sidecar), 'utf8'));
    const f = await openPath(path);
    try {
      const digests = await f.verify();
      assert.deepEqual({ version_major: f.header.versionMajor, version_minor: f.header.versionMinor }, sidecar.header);
      assert.deepEqual(JSON.parse(toJsonText(f.manifest)), sidecar.manifest);
      assert.deepEqual([...f.tensors.keys()].sort(), Object.keys(sidecar.tensors).sort());
      for (const [name, want] of Object.entries(sidecar.tensors)) {
        const t = f.tensors.get(name);
        assert.deepEqual({ dtype: t.dtype, shape: t.shape, sha256: digests.get(name) }, want);
        const raw = await f.tensorBytes(name);
        assert.equal(createHash('sha256').update(raw).digest('hex'), want.sha256);
        const arr = await f.tensor(name);
        assert.equal(arr.length, t.shape.reduce((a, b) => a * b, 1));
        if (t.shape.length > 0 && t.shape[0] > 1) {
          const rows = await f.tensorRows(name, 1, 5); // clipped to the rows there are
          const per = arr.length / t.shape[0];
          assert.deepEqual([...rows], [...arr.subarray(per, per * t.shape[0])]);
        }
      }
    } finally {
      await f.close();
    }
  });
}

test('open reads the header and the manifest only (lazy), tensors on demand', async () => {
  const bytes = new Uint8Array(await readFile(join(CORPUS, 'valid', 'full.sldp')));
  const src = new BytesSource(bytes);
  let maxEnd = 0;
  const read = src.read.bind(src);
  src.read = async (off, n) => { maxEnd = Math.max(maxEnd, off + n); return read(off, n); };
  const f = await openSldp(src);
  assert.equal(maxEnd, 64 + f.header.manifestLength);
  assert.ok(maxEnd < bytes.length);
  const lrs = await f.tensor('lrs');
  assert.ok(lrs instanceof Float32Array && lrs.length > 0 && lrs.every(Number.isFinite));
  assert.equal(maxEnd, bytes.length - (f.payloadOffset + Number(f.payload.decodedSize) - (f.tensorOffset('lrs') + lrs.length * 4)));
});

test('a flipped tensor byte is E_TENSOR_DIGEST at the tensor, and verifyEach goes on with the others', async () => {
  const bytes = new Uint8Array(await readFile(join(CORPUS, 'valid', 'full.sldp')));
  const f0 = await openSldp(new BytesSource(bytes));
  await f0.loadPayload();
  const at = f0.tensorOffset('images');
  bytes[at] ^= 1;
  const f = await openSldp(new BytesSource(bytes));
  const res = await f.verifyEach();
  const bad = res.filter((r) => !r.ok);
  assert.deepEqual(bad.map((r) => [r.name, r.error.code, r.error.offset]), [['images', 'E_TENSOR_DIGEST', at]]);
  assert.equal(res.length, f.tensors.size);
  await assert.rejects(f.tensor('images'), { code: 'E_TENSOR_DIGEST', offset: at });
  assert.equal((await f.tensor('images', { verify: false })).length, f.tensors.get('images').shape.reduce((a, b) => a * b, 1));
});

test('a missing file is E_IO', async () => {
  await assert.rejects(openPath(join(CORPUS, 'no-such-file.sldp')), { code: 'E_IO' });
});
