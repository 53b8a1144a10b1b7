// The signing corpus (spec/conformance/signing/index.json): every case's verdict and reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import { verifySignature, keyIdOfPem } from '../src/signing.js';
import { SldpSignatureError, SldpUsageError } from '../src/errors.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'spec', 'conformance', 'signing');
const index = JSON.parse(await readFile(join(ROOT, 'index.json'), 'utf8'));

async function keysOf(c) {
  if (c.public_key) return [await readFile(join(ROOT, c.public_key), 'utf8')];
  const dir = join(ROOT, c.trusted_keys);
  const names = (await readdir(dir)).filter((n) => n.endsWith('.pub') || n.endsWith('.pem'));
  return Promise.all(names.map((n) => readFile(join(dir, n), 'utf8')));
}

for (const c of index.cases) {
  test(`signing ${c.name}`, async () => {
    let signature = null;
    try { signature = new Uint8Array(await readFile(join(ROOT, c.signature))); } catch (e) { if (e.code !== 'ENOENT') throw e; }
    const args = {
      fileSha256: async () => createHash('sha256').update(await readFile(join(ROOT, c.file))).digest('hex'),
      signature, publicKeys: await keysOf(c), trustedSet: Boolean(c.trusted_keys),
    };
    if (c.expect === 'valid') {
      const r = await verifySignature(args);
      assert.equal(r.keyId, await keyIdOfPem(await readFile(join(ROOT, 'signer.pub'), 'utf8')));
      assert.equal(r.fileSha256, createHash('sha256').update(await readFile(join(ROOT, c.file))).digest('hex'));
    } else {
      await assert.rejects(verifySignature(args), (e) => e instanceof SldpSignatureError && e.reason === c.reason);
    }
  });
}

test('a private key is a usage error, not a verification result', async () => {
  const pem = await readFile(join(ROOT, 'signer.key.TEST-ONLY'), 'utf8');
  await assert.rejects(verifySignature({ fileSha256: async () => '', signature: null, publicKeys: [pem] }), SldpUsageError);
});

// annex section 5, step 2: a hint is a key id (64 lowercase hex characters) or absent/null; publicKey an object
for (const [what, edit, reason] of [
  ['upper-case hint', (b) => { b.verificationMaterial.publicKey.hint = b.verificationMaterial.publicKey.hint.toUpperCase(); }, 'malformed'],
  ['empty hint', (b) => { b.verificationMaterial.publicKey.hint = ''; }, 'malformed'],
  ['publicKey not an object', (b) => { b.verificationMaterial.publicKey = 'k'; }, 'malformed'],
  ['padding after a full group', (b) => { b.dsseEnvelope.payload = 'QUJD=='; }, 'malformed'],
  ['null hint', (b) => { b.verificationMaterial.publicKey.hint = null; }, null],
]) {
  test(`signing bundle form: ${what}`, async () => {
    const bundle = JSON.parse(await readFile(join(ROOT, 'signed.sldp.sig'), 'utf8'));
    edit(bundle);
    const args = {
      fileSha256: async () => createHash('sha256').update(await readFile(join(ROOT, 'signed.sldp'))).digest('hex'),
      signature: new TextEncoder().encode(JSON.stringify(bundle)),
      publicKeys: [await readFile(join(ROOT, 'signer.pub'), 'utf8')], trustedSet: false,
    };
    if (reason === null) assert.ok((await verifySignature(args)).keyId);
    else await assert.rejects(verifySignature(args), (e) => e instanceof SldpSignatureError && e.reason === reason);
  });
}
