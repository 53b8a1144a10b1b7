// Detached signatures (annex spec/SLDP-1-signing.md): the verification steps of its section 5, in order,
// with WebCrypto ECDSA P-256 / SHA-256. Each failure is an SldpSignatureError whose `reason` is the
// annex's word (missing, malformed, wrong-key, untrusted-key, bad-signature, statement, file-changed).

import { SldpSignatureError, SldpUsageError } from './errors.js';
import { sha256Hex, subtle } from './sha256.js';

export const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
export const PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
export const PREDICATE_TYPE = 'https://model_signing/signature/v1.0';
export const MAX_SIGNATURE_BYTES = 1 << 20;

const enc = new TextEncoder();
const KEY_ID = /^[0-9a-f]{64}$/; // key ids and SHA-256 digests: lowercase hex only

function b64decode(s) {
  if (typeof s !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) return null;
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function b64encode(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s);
}

/** PEM text -> DER bytes of its one `-----BEGIN PUBLIC KEY-----` block (a usage error otherwise). */
function pemToDer(pem) {
  const m = /-----BEGIN ([A-Z ]+)-----([\s\S]*?)-----END \1-----/.exec(pem);
  if (!m) throw new SldpUsageError('not a PEM public key');
  if (m[1] !== 'PUBLIC KEY') throw new SldpUsageError(`a ${m[1]} is not a public key (PEM SubjectPublicKeyInfo, "BEGIN PUBLIC KEY")`);
  const der = b64decode(m[2].replace(/\s+/g, ''));
  if (der === null) throw new SldpUsageError('PEM body is not base64');
  return der;
}

/** The annex's key id: SHA-256 (hex) of the key's canonical PEM SubjectPublicKeyInfo text. */
export async function keyIdOfDer(der) {
  const body = b64encode(der).replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return sha256Hex([enc.encode(`-----BEGIN PUBLIC KEY-----\n${body}\n-----END PUBLIC KEY-----\n`)]);
}

export async function keyIdOfPem(pem) {
  return keyIdOfDer(pemToDer(pem));
}

/** Load an ECDSA P-256 public key from PEM (annex section 5 step 1; anything else is a usage error). */
export async function loadPublicKey(pem) {
  const der = pemToDer(pem);
  let key;
  try {
    key = await (await subtle()).importKey('spki', der, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
  } catch (e) {
    throw new SldpUsageError(`not an ECDSA P-256 public key (${e && e.message ? e.message : e})`);
  }
  return { key, id: await keyIdOfDer(der) };
}

/** ASN.1 DER ECDSA signature -> the 64-byte r||s form WebCrypto verifies (null when malformed). */
export function derToRaw(der) {
  let p = 0;
  const byte = () => (p < der.length ? der[p++] : -1);
  if (byte() !== 0x30) return null;
  let len = byte();
  if (len & 0x80) {
    if (len !== 0x81) return null;
    len = byte();
  }
  if (len !== der.length - p) return null;
  const out = new Uint8Array(64);
  for (let k = 0; k < 2; k++) {
    if (byte() !== 0x02) return null;
    const n = byte();
    if (n < 1 || n > 33 || p + n > der.length) return null;
    let v = der.subarray(p, p + n);
    p += n;
    while (v.length > 1 && v[0] === 0) v = v.subarray(1);
    if (v.length > 32) return null;
    out.set(v, k * 32 + 32 - v.length);
  }
  return p === der.length ? out : null;
}

/** DSSE v1 pre-authentication encoding. */
export function pae(type, payload) {
  const t = enc.encode(type);
  const head = enc.encode(`DSSEv1 ${t.length} ${type} ${payload.length} `);
  const out = new Uint8Array(head.length + payload.length);
  out.set(head);
  out.set(payload, head.length);
  return out;
}

const fail = (reason, msg) => new SldpSignatureError(reason, msg);
const isMap = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * Verify a detached signature over the exact file bytes (annex section 5, steps in order).
 * @param {{fileSha256: () => Promise<string>, signature: Uint8Array|null, publicKeys: string[], trustedSet?: boolean}} args
 *   fileSha256: computes the file's SHA-256 (called last); signature: the .sig bytes, null when absent;
 *   publicKeys: PEM texts (one expected key, or the trusted set when trustedSet).
 * @returns {Promise<{keyId: string, fileSha256: string, subjectName: string}>}
 * @throws {SldpSignatureError} with the failing step's reason; SldpUsageError for an unusable key
 */
export async function verifySignature({ fileSha256, signature, publicKeys, trustedSet = false }) {
  // keys first: an unusable key is a usage error whatever the signature looks like
  const keys = new Map();
  for (const pem of publicKeys) {
    const k = await loadPublicKey(pem);
    keys.set(k.id, k.key);
  }
  if (keys.size === 0) throw new SldpUsageError('no public key given');
  if (signature === null || signature === undefined) throw fail('missing', 'no signature file');
  if (signature.length > MAX_SIGNATURE_BYTES) throw fail('malformed', `signature file larger than ${MAX_SIGNATURE_BYTES} bytes`);
  let bundle;
  try {
    bundle = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(signature));
  } catch (e) {
    throw fail('malformed', `signature file is not UTF-8 JSON (${e.message})`);
  }
  if (!isMap(bundle) || bundle.mediaType !== BUNDLE_MEDIA_TYPE) throw fail('malformed', `not a Sigstore bundle of media type ${BUNDLE_MEDIA_TYPE}`);
  const material = bundle.verificationMaterial;
  if (!isMap(material)) throw fail('malformed', 'bundle has no verificationMaterial object');
  const pub = material.publicKey;
  if (pub !== undefined && pub !== null && !isMap(pub)) throw fail('malformed', 'verificationMaterial.publicKey is not an object');
  const hint = isMap(pub) ? pub.hint : undefined;
  // a key id is 64 lowercase hex characters (annex section 5, step 2); absent or null is no hint
  if (hint !== undefined && hint !== null && !(typeof hint === 'string' && KEY_ID.test(hint))) {
    throw fail('malformed', 'verificationMaterial.publicKey.hint is not a key id (64 lowercase hex characters)');
  }
  const env = bundle.dsseEnvelope;
  if (!isMap(env)) throw fail('malformed', 'bundle has no dsseEnvelope object');
  if (env.payloadType !== PAYLOAD_TYPE) throw fail('malformed', `payloadType ${JSON.stringify(env.payloadType)}, expected ${PAYLOAD_TYPE}`);
  const payload = b64decode(env.payload);
  if (payload === null) throw fail('malformed', 'dsseEnvelope.payload is not base64');
  if (!Array.isArray(env.signatures) || env.signatures.length !== 1) throw fail('malformed', 'the envelope must hold exactly one signature');
  const sigDer = isMap(env.signatures[0]) ? b64decode(env.signatures[0].sig) : null;
  if (sigDer === null) throw fail('malformed', 'the signature value is not base64');

  let candidates;
  if (typeof hint === 'string') {
    if (!keys.has(hint)) {
      if (!trustedSet) throw fail('wrong-key', `signed by another key (key id ${hint.slice(0, 16)}..)`);
      throw fail('untrusted-key', `the signer's key (key id ${hint.slice(0, 16)}..) is not among the ${keys.size} trusted key(s)`);
    }
    candidates = [[hint, keys.get(hint)]];
  } else candidates = [...keys]; // an older bundle without a hint: any trusted key may verify it

  const raw = derToRaw(sigDer);
  const message = pae(PAYLOAD_TYPE, payload);
  let signer = null;
  if (raw !== null) {
    for (const [id, key] of candidates) {
      if (await (await subtle()).verify({ name: 'ECDSA', hash: 'SHA-256' }, key, raw, message)) {
        signer = id;
        break;
      }
    }
  }
  if (signer === null) throw fail('bad-signature', 'the signature does not verify: the signature or the signed statement was altered');

  let st;
  try {
    st = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch (e) {
    throw fail('statement', `the signed payload is not JSON (${e.message})`);
  }
  if (!isMap(st) || st._type !== STATEMENT_TYPE || st.predicateType !== PREDICATE_TYPE) throw fail('statement', 'not a model-signing statement');
  const pred = st.predicate;
  const ser = isMap(pred) ? pred.serialization : null;
  if (!isMap(ser) || ser.method !== 'files' || ser.hash_type !== 'sha256') throw fail('statement', "serialization must be method 'files', hash_type 'sha256'");
  const res = pred.resources;
  if (!Array.isArray(res) || res.length !== 1 || !isMap(res[0]) || res[0].name !== '.' || res[0].algorithm !== 'sha256' || typeof res[0].digest !== 'string') {
    throw fail('statement', "the statement must list exactly one resource {name: '.', algorithm: 'sha256'}");
  }
  const signed = res[0].digest;
  if (!KEY_ID.test(signed)) throw fail('statement', 'the resource digest is not 64 lowercase hex characters');
  const rawDigest = new Uint8Array(signed.length / 2);
  for (let i = 0; i < rawDigest.length; i++) rawDigest[i] = parseInt(signed.slice(2 * i, 2 * i + 2), 16);
  const root = await sha256Hex([rawDigest]);
  const subj = st.subject;
  if (!Array.isArray(subj) || subj.length !== 1 || !isMap(subj[0]) || !isMap(subj[0].digest) || subj[0].digest.sha256 !== root) {
    throw fail('statement', 'the subject digest is not SHA-256 of the resource digest');
  }
  const got = await fileSha256();
  if (got !== signed) throw fail('file-changed', `the file's bytes changed since they were signed: SHA-256 ${got.slice(0, 16)}.., signed ${signed.slice(0, 16)}..`);
  return { keyId: signer, fileSha256: got, subjectName: String(subj[0].name ?? '') };
}
