// Reading an `.sldp` file (spec/SLDP-1.md section 12): header and manifest on open, the payload and each
// tensor on demand. Every defect is an SldpFormatError with a code and the byte offset of spec section 11.

import { SldpFormatError, SldpUsageError } from './errors.js';
import {
  DTYPE_ITEMSIZE, HEADER_DIGEST_PREFIX, HEADER_SIZE, MAGIC, MAX_DECODED_PAYLOAD, MAX_MANIFEST_BYTES,
  MAX_ST_HEADER_BYTES, OFF_MANIFEST_LENGTH, OFF_MANIFEST_SHA256, OFF_PAYLOAD_LENGTH, OFF_RESERVED,
  OFF_VERSION_MAJOR, TEXT_MODE_TAILS, VERSION_MAJOR, VERSION_MINOR,
} from './constants.js';
import { decode, hex } from './msgpack.js';
import { checkManifest } from './schema.js';
import { encodeHeader, nbytes, parseHeader } from './safetensors.js';
import { sha256Hex, STREAMING } from './sha256.js';
import { unzstd } from './zstd.js';

const CHUNK = 1 << 23; // 8 MiB per read when streaming a tensor
const LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function startsWith(bytes, prefix) {
  if (bytes.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
  return true;
}

function checkMagic(got) {
  if (startsWith(got, MAGIC)) return;
  // text-mode transfers (spec section 3): the translated sequence must be there in full
  if (startsWith(got, MAGIC.subarray(0, 5)) && TEXT_MODE_TAILS.some((t) => startsWith(got.subarray(5), t))) {
    throw new SldpFormatError('E_TEXT_MODE', 'magic damaged by a text-mode (CRLF/LF) transfer; copy the file in binary mode', { offset: 0, expected: hex(MAGIC), got: hex(got.subarray(0, 8)) });
  }
  throw new SldpFormatError('E_MAGIC', 'not an SLDP file', { offset: 0, expected: hex(MAGIC), got: hex(got.subarray(0, 8)) });
}

/** Spec section 12 steps 1-3: the fixed header and the file's size. */
export async function parseHeader64(src) {
  if (src.size < HEADER_SIZE) {
    const got = await src.read(0, Math.min(10, src.size));
    if (startsWith(MAGIC, got.subarray(0, 8))) {
      throw new SldpFormatError('E_TRUNCATED', 'file ends inside the 64-byte header', { offset: src.size, expected: `>= ${HEADER_SIZE} bytes`, got: src.size });
    }
    checkMagic(got);
  }
  const raw = (await src.read(0, HEADER_SIZE)).slice();
  checkMagic(raw);
  const dv = new DataView(raw.buffer);
  const major = dv.getUint16(8, true);
  const minor = dv.getUint16(10, true);
  if (major !== VERSION_MAJOR) {
    throw new SldpFormatError('E_VERSION_MAJOR', `file is SLDP ${major}.${minor}; this reader implements SLDP ${VERSION_MAJOR}.x (up to ${VERSION_MAJOR}.${VERSION_MINOR})`, { offset: OFF_VERSION_MAJOR, expected: `major ${VERSION_MAJOR}`, got: `${major}.${minor}` });
  }
  const reserved = dv.getUint32(12, true);
  if (reserved !== 0) throw new SldpFormatError('E_RESERVED', 'reserved header field must be zero', { offset: OFF_RESERVED, expected: 0, got: reserved });
  const mlen = dv.getBigUint64(16, true);
  if (mlen > BigInt(MAX_MANIFEST_BYTES)) throw new SldpFormatError('E_LIMIT', 'manifest_length exceeds the limit', { offset: OFF_MANIFEST_LENGTH, expected: `<= ${MAX_MANIFEST_BYTES}`, got: mlen });
  const plen = dv.getBigUint64(24, true);
  if (plen > BigInt(MAX_DECODED_PAYLOAD)) throw new SldpFormatError('E_LIMIT', 'payload_length exceeds the limit', { offset: OFF_PAYLOAD_LENGTH, expected: `<= ${MAX_DECODED_PAYLOAD}`, got: plen });
  const end = HEADER_SIZE + Number(mlen) + Number(plen);
  if (src.size < end) throw new SldpFormatError('E_TRUNCATED', 'file is shorter than its header declares', { offset: src.size, expected: `${end} bytes`, got: `${src.size} bytes` });
  if (src.size > end) throw new SldpFormatError('E_TRAILING', 'bytes follow the declared end of the file', { offset: end, expected: `${end} bytes`, got: `${src.size} bytes` });
  return {
    versionMajor: major, versionMinor: minor, manifestLength: Number(mlen), payloadLength: Number(plen),
    manifestSha256: hex(raw.subarray(32, 64)), raw,
  };
}

/** An opened `.sldp` file. Use {@link openSldp}. */
export class SldpFile {
  constructor(src, header, manifest, layout, checked, stHeader, opts) {
    this.source = src;
    this.header = header;
    /** the decoded manifest as stored (maps are null-prototype objects, ints beyond 2^53 bigints) */
    this.manifest = manifest;
    this.layout = layout;
    /** name -> {role, dtype, shape, sha256}, in storage order */
    this.tensors = checked.tensors;
    this.payload = checked.payload;
    this.stHeader = stHeader;
    this.opts = opts;
    this._decoded = null;
    this._entries = null;
    this._dataStart = 0;
  }

  get fileSize() { return this.source.size; }
  get payloadOffset() { return HEADER_SIZE + this.header.manifestLength; }
  get flat() { return this.payload.compression !== 'none'; }

  /** Byte accounting: header, manifest, payload stored/decoded, safetensors header, bytes per tensor. */
  layoutBytes() {
    const tensorBytes = {};
    for (const [n, t] of this.tensors) tensorBytes[n] = Number(nbytes(t.dtype, t.shape));
    return {
      header: HEADER_SIZE, manifest: this.header.manifestLength, payloadStored: this.header.payloadLength,
      payloadDecoded: Number(this.payload.decodedSize), stHeader: this.stHeader.length, tensorBytes,
      compression: this.payload.compression,
    };
  }

  /** Spec section 12 step 5: read (and for zstd, check and decompress) the payload's safetensors header. */
  async loadPayload() {
    if (this._entries !== null) return;
    const base = this.payloadOffset;
    const decodedSize = Number(this.payload.decodedSize);
    let prefix;
    let decoded = null;
    if (!this.flat) {
      let n = 0;
      if (decodedSize >= 8) {
        const lenBytes = await this.source.read(base, 8);
        const big = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true);
        n = big > BigInt(MAX_ST_HEADER_BYTES) ? MAX_ST_HEADER_BYTES : Number(big);
      }
      prefix = (await this.source.read(base, Math.min(decodedSize, 8 + n))).slice();
    } else {
      const stored = await this.readRange(base, this.header.payloadLength, 'payload');
      const got = await sha256Hex([stored]);
      if (got !== this.payload.storedSha256) {
        // checked before the frame is parsed (spec section 9)
        throw new SldpFormatError('E_PAYLOAD_DIGEST', 'compressed payload bytes do not match payload.stored_sha256', { offset: base, field: 'payload.stored_sha256', expected: this.payload.storedSha256, got });
      }
      decoded = await unzstd(stored, decodedSize, base, {
        onProgress: (d, t) => this.progress('decompress', d, t), pause: this.opts.pause,
      });
      prefix = decoded;
    }
    const { entries, dataStart } = parseHeader(prefix, decodedSize, base, this.flat);
    this.checkAgainstManifest(prefix, entries, this.flat ? base : base + 8);
    this._decoded = decoded;
    this._entries = new Map(entries.map((e) => [e.name, e]));
    this._dataStart = dataStart;
  }

  checkAgainstManifest(prefix, entries, at) {
    const names = new Set(entries.map((e) => e.name));
    const same = names.size === this.tensors.size && [...this.tensors.keys()].every((n) => names.has(n));
    if (!same) throw new SldpFormatError('E_ST_MISMATCH', "payload tensors differ from the manifest's tensor table", { offset: at });
    for (const e of entries) {
      const t = this.tensors.get(e.name);
      if (t.dtype !== e.dtype || t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
        throw new SldpFormatError('E_ST_MISMATCH', `tensor ${JSON.stringify(e.name)} differs between payload and manifest`, { offset: at, expected: `${t.dtype}[${t.shape}]`, got: `${e.dtype}[${e.shape}]` });
      }
    }
    const c = this.stHeader;
    let equal = prefix.length >= c.length;
    for (let i = 0; equal && i < c.length; i++) if (prefix[i] !== c[i]) equal = false;
    if (!equal) throw new SldpFormatError('E_ST_MISMATCH', 'safetensors header is not in canonical form (name order, no whitespace, space padding to 8)', { offset: at });
  }

  progress(stage, done, total) {
    if (this.opts.onProgress) this.opts.onProgress({ stage, done, total });
  }

  async readRange(offset, n, stage) {
    if (n <= CHUNK) return (await this.source.read(offset, n)).slice();
    const out = new Uint8Array(n);
    for (let p = 0; p < n; p += CHUNK) {
      const k = Math.min(CHUNK, n - p);
      out.set(await this.source.read(offset + p, k), p);
      this.progress(stage, p + k, n);
    }
    return out;
  }

  entry(name) {
    if (!this.tensors.has(name)) throw new SldpUsageError(`no tensor named ${JSON.stringify(name)}; the file has ${[...this.tensors.keys()].join(', ')}`);
    return this._entries.get(name);
  }

  /** Absolute offset reported for tensor `name` (its first byte, or the payload's for a zstd payload). */
  tensorOffset(name) {
    const e = this.entry(name);
    return this.flat ? this.payloadOffset : this.payloadOffset + this._dataStart + e.begin;
  }

  /** The tensor's stored bytes (little-endian, row-major). With `verify` (default) its SHA-256 is checked first. */
  async tensorBytes(name, { verify = true } = {}) {
    await this.loadPayload();
    const e = this.entry(name);
    const n = e.end - e.begin;
    const raw = this._decoded !== null ? this._decoded.subarray(this._dataStart + e.begin, this._dataStart + e.end)
      : await this.readRange(this.payloadOffset + this._dataStart + e.begin, n, `tensor ${name}`);
    if (verify) this.checkDigest(name, await sha256Hex([raw]));
    if (this.tensors.get(name).role === 'lrs') this.checkFinite(name, raw);
    return raw;
  }

  checkDigest(name, got) {
    const t = this.tensors.get(name);
    if (got !== t.sha256) {
      throw new SldpFormatError('E_TENSOR_DIGEST', `tensor ${JSON.stringify(name)} bytes do not match its sha256`, { offset: this.tensorOffset(name), field: `tensors.${name}.sha256`, expected: t.sha256, got });
    }
  }

  checkFinite(name, raw) {
    const t = this.tensors.get(name);
    const size = DTYPE_ITEMSIZE[t.dtype];
    const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    const count = raw.length / size;
    for (let i = 0; i < count; i++) {
      let bad = false;
      if (t.dtype === 'F64') bad = !Number.isFinite(dv.getFloat64(i * 8, true));
      else if (t.dtype === 'F32') bad = !Number.isFinite(dv.getFloat32(i * 4, true));
      else if (t.dtype === 'F16') bad = (dv.getUint16(i * 2, true) & 0x7c00) === 0x7c00;
      else if (t.dtype === 'BF16') bad = (dv.getUint16(i * 2, true) & 0x7f80) === 0x7f80;
      else return;
      if (bad) {
        throw new SldpFormatError('E_NONFINITE', `learning rate ${i} of ${JSON.stringify(name)} is not finite`, { offset: this.tensorOffset(name) + (this.flat ? 0 : i * size), field: `tensors.${name}`, expected: 'finite' });
      }
    }
  }

  /** SHA-256 of a tensor's stored bytes, streamed in chunks for an uncompressed payload. */
  async tensorDigest(name) {
    await this.loadPayload();
    const e = this.entry(name);
    if (this._decoded !== null) return sha256Hex([this._decoded.subarray(this._dataStart + e.begin, this._dataStart + e.end)]);
    const self = this;
    const start = this.payloadOffset + this._dataStart + e.begin;
    const n = e.end - e.begin;
    // WebCrypto hashes one buffer: read the tensor into one allocation (chunked reads, progress), no copies
    if (!STREAMING) return sha256Hex([await this.readRange(start, n, `tensor ${name}`)]);
    async function* chunks() {
      for (let p = 0; p < n; p += CHUNK) {
        const k = Math.min(CHUNK, n - p);
        yield await self.source.read(start + p, k);
        self.progress(`hash ${name}`, p + k, n);
        if (self.opts.pause) await self.opts.pause();
      }
    }
    return sha256Hex(chunks());
  }

  /**
   * Check the payload and every tensor digest (spec 12 steps 5-6); throw the first defect.
   * @returns {Promise<Map<string, string>>} name -> SHA-256 of the stored bytes
   */
  async verify() {
    const out = new Map();
    for (const r of await this.verifyEach({ stopAtFirst: true })) {
      if (r.error) throw r.error;
      out.set(r.name, r.sha256);
    }
    return out;
  }

  /**
   * Each digest's status, for a viewer: one result per tensor ({name, ok, sha256, error}); a tensor
   * whose digest fails does not stop the others. A defect of the payload itself (zstd, safetensors
   * header) is one result named "payload" and ends the list.
   */
  async verifyEach({ stopAtFirst = false } = {}) {
    const results = [];
    try {
      await this.loadPayload();
    } catch (error) {
      if (!(error instanceof SldpFormatError)) throw error;
      return [{ name: 'payload', ok: false, error }];
    }
    for (const [name, t] of this.tensors) {
      try {
        const got = await this.tensorDigest(name);
        this.checkDigest(name, got);
        if (t.role === 'lrs') await this.tensorBytes(name, { verify: false }); // also checks finiteness
        results.push({ name, ok: true, sha256: got });
      } catch (error) {
        if (!(error instanceof SldpFormatError)) throw error;
        results.push({ name, ok: false, error });
        if (stopAtFirst) break;
      }
    }
    return results;
  }

  /**
   * Tensor `name` as a typed array (verified first unless `verify: false`): F64 Float64Array, F32/F16/BF16
   * Float32Array (F16 and BF16 converted exactly), I64 BigInt64Array, I32 Int32Array, U8 Uint8Array.
   */
  async tensor(name, opts = {}) {
    const raw = await this.tensorBytes(name, opts);
    return toTyped(raw, this.tensors.get(name).dtype);
  }

  /**
   * Rows [first, first + count) of tensor `name` along its first axis, as a typed array, read without
   * the rest of the tensor and WITHOUT a digest check (a viewer shows part of a tensor it verified).
   */
  async tensorRows(name, first, count) {
    await this.loadPayload();
    const e = this.entry(name);
    const t = this.tensors.get(name);
    const rows = t.shape.length ? t.shape[0] : 1;
    const a = Math.max(0, Math.min(rows, first));
    const b = Math.max(a, Math.min(rows, first + count));
    const rowBytes = rows ? (e.end - e.begin) / rows : 0;
    const start = this._dataStart + e.begin + a * rowBytes;
    const n = (b - a) * rowBytes;
    const raw = this._decoded !== null ? this._decoded.subarray(start, start + n)
      : await this.readRange(this.payloadOffset + start, n, `tensor ${name}`);
    return toTyped(raw, t.dtype);
  }

  async close() {
    this._decoded = null;
    await this.source.close();
  }
}

function f16ToF32(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Stored little-endian bytes -> a native typed array. */
export function toTyped(raw, dtype) {
  const copy = raw.slice(); // aligned, and independent of the file's buffer
  const dv = new DataView(copy.buffer);
  const n = copy.length / DTYPE_ITEMSIZE[dtype];
  switch (dtype) {
    case 'U8': return copy;
    case 'F16': { const o = new Float32Array(n); for (let i = 0; i < n; i++) o[i] = f16ToF32(dv.getUint16(2 * i, true)); return o; }
    case 'BF16': { const o = new Float32Array(n); const u = new Uint32Array(o.buffer); for (let i = 0; i < n; i++) u[i] = dv.getUint16(2 * i, true) << 16; return o; }
    default: break;
  }
  const T = { F64: Float64Array, F32: Float32Array, I64: BigInt64Array, I32: Int32Array }[dtype];
  if (LITTLE) return new T(copy.buffer);
  const o = new T(n);
  const get = { F64: 'getFloat64', F32: 'getFloat32', I64: 'getBigInt64', I32: 'getInt32' }[dtype];
  for (let i = 0; i < n; i++) o[i] = dv[get](i * T.BYTES_PER_ELEMENT, true);
  return o;
}

/**
 * Open an `.sldp` file lazily: header and manifest are checked now (spec 12 steps 1-4), nothing of the
 * payload is read. `source`: a BytesSource / BlobSource / NodeFileSource (anything with size and read()).
 * @param {{onProgress?: Function, pause?: () => Promise<void>}} [opts]
 */
export async function openSldp(source, opts = {}) {
  const header = await parseHeader64(source);
  const mbytes = (await source.read(HEADER_SIZE, header.manifestLength)).slice();
  const joined = new Uint8Array(HEADER_DIGEST_PREFIX + mbytes.length);
  joined.set(header.raw.subarray(0, HEADER_DIGEST_PREFIX));
  joined.set(mbytes, HEADER_DIGEST_PREFIX);
  const digest = await sha256Hex([joined]);
  if (digest !== header.manifestSha256) {
    throw new SldpFormatError('E_MANIFEST_DIGEST', 'header bytes 0-31 and manifest do not match manifest_sha256 (corrupted)', { offset: OFF_MANIFEST_SHA256, expected: header.manifestSha256, got: digest });
  }
  const { value, layout } = decode(mbytes, HEADER_SIZE);
  const checked = checkManifest(value, layout);
  const pay = checked.payload;
  const at = checked.offsets;
  if (BigInt(pay.storedSize) !== BigInt(header.payloadLength)) {
    throw new SldpFormatError('E_SCHEMA', "payload.stored_size differs from the header's payload_length", { offset: at.storedSize, field: 'payload.stored_size', expected: header.payloadLength, got: pay.storedSize });
  }
  if (BigInt(pay.decodedSize) > BigInt(MAX_DECODED_PAYLOAD)) {
    throw new SldpFormatError('E_LIMIT', 'payload.decoded_size exceeds the limit', { offset: at.decodedSize, field: 'payload.decoded_size', expected: `<= ${MAX_DECODED_PAYLOAD}`, got: pay.decodedSize });
  }
  if (pay.compression === 'none' && BigInt(pay.decodedSize) !== BigInt(pay.storedSize)) {
    throw new SldpFormatError('E_SCHEMA', 'uncompressed payload must have decoded_size == stored_size', { offset: at.decodedSize, field: 'payload.decoded_size', expected: pay.storedSize, got: pay.decodedSize });
  }
  const st = encodeHeader(checked.tensors);
  let need = BigInt(st.length);
  for (const t of checked.tensors.values()) need += nbytes(t.dtype, t.shape);
  if (need !== BigInt(pay.decodedSize)) {
    throw new SldpFormatError('E_SCHEMA', 'payload.decoded_size differs from what the tensor table needs', { offset: at.decodedSize, field: 'payload.decoded_size', expected: need, got: pay.decodedSize });
  }
  return new SldpFile(source, header, value, layout, checked, st, opts);
}
