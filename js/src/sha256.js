// SHA-256, one small adapter: node:crypto (streaming) in Node, WebCrypto (one shot) in the browser.
// WebCrypto has no incremental digest, so in the browser the chunks of one digest are gathered first; a
// tensor is at most what the page already holds in memory.

const isNode = typeof process !== 'undefined' && process.versions != null && process.versions.node != null;

/** True when sha256Hex hashes chunk by chunk (Node); false when it needs the bytes in one piece (WebCrypto). */
export const STREAMING = isNode;
let nodeCrypto = null;

async function nodeHash() {
  if (nodeCrypto === null) nodeCrypto = await import('node:crypto');
  return nodeCrypto.createHash('sha256');
}

function toHex(buf) {
  const b = new Uint8Array(buf);
  let s = '';
  for (let i = 0; i < b.length; i++) s += b[i].toString(16).padStart(2, '0');
  return s;
}

/** WebCrypto's SubtleCrypto: the browser's, or Node's (node:crypto webcrypto) on Node 18. */
export async function subtle() {
  if (globalThis.crypto && globalThis.crypto.subtle) return globalThis.crypto.subtle;
  if (isNode) return (await import('node:crypto')).webcrypto.subtle;
  throw new Error('no WebCrypto in this environment (the page must be served over http://127.0.0.1 or https)');
}

/**
 * SHA-256 (lowercase hex) of the concatenation of `chunks`.
 * @param {Iterable<Uint8Array>|AsyncIterable<Uint8Array>} chunks
 */
export async function sha256Hex(chunks) {
  if (chunks instanceof Uint8Array) chunks = [chunks];
  if (isNode) {
    const h = await nodeHash();
    for await (const c of chunks) h.update(c);
    return h.digest('hex');
  }
  const parts = [];
  let total = 0;
  for await (const c of chunks) {
    parts.push(c);
    total += c.length;
  }
  let data;
  if (parts.length === 1) data = parts[0];
  else {
    data = new Uint8Array(total);
    let p = 0;
    for (const c of parts) {
      data.set(c, p);
      p += c.length;
    }
  }
  return toHex(await (await subtle()).digest('SHA-256', data));
}
