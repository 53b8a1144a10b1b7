#!/usr/bin/env node
// sldp-read FILE: read and fully verify one `.sldp` file with sldp-js and print one JSON verdict line, the
// protocol of `sldp conformance --reader` (spec/conformance/README.md):
//   {"valid": true, "header": {...}, "manifest": {...}, "tensors": {...}}   exit 0
//   {"valid": false, "code": "E_...", "offset": N, "message": "..."}        exit 1
// Any other failure (a bug in sldp-js) exits 3 with the error on stderr: the harness counts it as a crash.
//
// sldp-read --signature SIG (--key PUB | --trusted-keys DIR) FILE: check a detached signature
// (annex SLDP-1-signing.md) first; prints {"valid": false, "reason": "..."} and exits 1 when it fails.
//
// sldp-read --many FILE...: one verdict line per file, each with "file" (no manifest), exit 0; for
// comparing many files with another reader (tests/format/test_js_reader.py) without a process per file.

import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { openPath } from '../src/node.js';
import { SldpFormatError, SldpSignatureError, SldpUsageError } from '../src/errors.js';
import { toJsonText } from '../src/msgpack.js';
import { verifySignature } from '../src/signing.js';

const USAGE = 'usage: sldp-read.mjs [--signature SIG (--key PUB | --trusted-keys DIR)] FILE | --many FILE...';

async function many(files) {
  for (const file of files) {
    let v;
    let f;
    try {
      f = await openPath(file);
      await f.verify();
      v = { file, valid: true };
    } catch (e) {
      if (!(e instanceof SldpFormatError)) throw e;
      v = { file, valid: false, code: e.code, offset: e.offset };
    } finally {
      if (f) await f.close();
    }
    process.stdout.write(`${JSON.stringify(v)}\n`);
  }
  return 0;
}

function parseArgs(argv) {
  const out = { file: null, signature: null, key: null, trusted: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--signature' || a === '--key' || a === '--trusted-keys') {
      if (i + 1 >= argv.length) return null;
      out[{ '--signature': 'signature', '--key': 'key', '--trusted-keys': 'trusted' }[a]] = argv[++i];
    } else if (a.startsWith('--') || out.file !== null) return null;
    else out.file = a;
  }
  if (out.file === null || (out.signature !== null && (out.key === null) === (out.trusted === null))) return null;
  return out;
}

async function checkSignature(args) {
  const publicKeys = [];
  if (args.key !== null) publicKeys.push(await readFile(args.key, 'utf8'));
  else {
    const names = (await readdir(args.trusted)).filter((n) => n.endsWith('.pub') || n.endsWith('.pem')).sort();
    for (const n of names) publicKeys.push(await readFile(join(args.trusted, n), 'utf8'));
  }
  let signature = null;
  try {
    signature = new Uint8Array(await readFile(args.signature));
  } catch (e) {
    if (e.code !== 'ENOENT') throw e;
  }
  const fileSha256 = async () => {
    const { createHash } = await import('node:crypto');
    return createHash('sha256').update(await readFile(args.file)).digest('hex');
  };
  return verifySignature({ fileSha256, signature, publicKeys, trustedSet: args.trusted !== null });
}

async function main() {
  if (process.argv[2] === '--many') return many(process.argv.slice(3));
  const args = parseArgs(process.argv.slice(2));
  if (args === null) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  let sig = null;
  if (args.signature !== null) {
    try {
      sig = await checkSignature(args);
    } catch (e) {
      if (e instanceof SldpSignatureError) {
        process.stdout.write(`${JSON.stringify({ valid: false, reason: e.reason, message: e.message })}\n`);
        return 1;
      }
      if (e instanceof SldpUsageError) {
        process.stderr.write(`sldp-read: ${e.message}\n`);
        return 2;
      }
      throw e;
    }
  }
  let f;
  try {
    f = await openPath(args.file);
    const digests = await f.verify();
    const tensors = [...f.tensors].map(([n, t]) => `${JSON.stringify(n)}:${JSON.stringify({ dtype: t.dtype, shape: t.shape, sha256: digests.get(n) })}`);
    const header = { version_major: f.header.versionMajor, version_minor: f.header.versionMinor };
    const signed = sig === null ? '' : `,"signature":${JSON.stringify(sig)}`;
    process.stdout.write(`{"valid":true,"header":${JSON.stringify(header)},"manifest":${toJsonText(f.manifest)},"tensors":{${tensors.join(',')}}${signed}}\n`);
    return 0;
  } catch (e) {
    if (!(e instanceof SldpFormatError)) throw e;
    process.stdout.write(`${JSON.stringify({ valid: false, code: e.code, offset: e.offset, message: e.message }, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
    return 1;
  } finally {
    if (f) await f.close();
  }
}

main().then((code) => { process.exitCode = code; }, (e) => {
  process.stderr.write(`sldp-read: internal error (a bug in sldp-js): ${e && e.stack ? e.stack : e}\n`);
  process.exitCode = 3;
});
