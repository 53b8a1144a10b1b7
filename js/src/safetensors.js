// The payload's canonical safetensors header (spec section 6.1): derived from the manifest's tensor
// table, and parsed strictly from the payload with the checks in the spec's order.

import { SldpFormatError } from './errors.js';
import { DTYPE_ITEMSIZE, MAX_RANK, MAX_ST_HEADER_BYTES, MAX_TENSORS } from './constants.js';

const utf8enc = new TextEncoder();
// ignoreBOM: keep a leading U+FEFF so that the JSON parser refuses it, as a strict JSON parser does
const utf8dec = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Byte size of a tensor, as a bigint (shapes may declare up to 2^53 - 1 per dimension). */
export function nbytes(dtype, shape) {
  let n = BigInt(DTYPE_ITEMSIZE[dtype]);
  for (const d of shape) n *= BigInt(d);
  return n;
}

function jsonName(name) {
  // json.dumps(name, ensure_ascii=False): only '"' and '\' need escaping (names have no control characters)
  return `"${name.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/**
 * The canonical safetensors header (8-byte length + padded JSON) for the tensor table, names in the
 * order of their UTF-8 bytes (the manifest's order, which canonical msgpack already sorts).
 * @param {Map<string, {dtype: string, shape: number[]}>} tensors
 * @returns {Uint8Array}
 */
export function encodeHeader(tensors) {
  const parts = [];
  let pos = 0n;
  for (const [name, t] of tensors) {
    const end = pos + nbytes(t.dtype, t.shape);
    parts.push(`${jsonName(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${pos},${end}]}`);
    pos = end;
  }
  const text = utf8enc.encode(`{${parts.join(',')}}`);
  const pad = (8 - ((8 + text.length) % 8)) % 8;
  const out = new Uint8Array(8 + text.length + pad);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length + pad), true);
  out.set(text, 8);
  out.fill(0x20, 8 + text.length);
  return out;
}

// --- a strict JSON parser that keeps an object's members in order (duplicates stay visible) ---------

class JsonError extends Error {}

const MAX_JSON_DEPTH = 64;

function parseJson(text) {
  let i = 0;
  const ws = () => {
    while (i < text.length && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i++;
  };
  const value = (depth) => {
    if (depth > MAX_JSON_DEPTH) throw new JsonError('nested too deeply');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const pairs = [];
      ws();
      if (text[i] === '}') { i++; return { pairs }; }
      for (;;) {
        ws();
        if (text[i] !== '"') throw new JsonError('expected a member name');
        const k = string();
        ws();
        if (text[i] !== ':') throw new JsonError("expected ':'");
        i++;
        pairs.push([k, value(depth + 1)]);
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return { pairs }; }
        throw new JsonError("expected ',' or '}'");
      }
    }
    if (c === '[') {
      i++;
      const arr = [];
      ws();
      if (text[i] === ']') { i++; return arr; }
      for (;;) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return arr; }
        throw new JsonError("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    for (const [lit, v] of [['true', true], ['false', false], ['null', null], ['NaN', NaN], ['Infinity', Infinity], ['-Infinity', -Infinity]]) {
      if (text.startsWith(lit, i)) { i += lit.length; return v; }
    }
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(i, i + 400));
    if (!m || m[0] === '') throw new JsonError('unexpected character');
    i += m[0].length;
    // an integer literal stays an exact integer (a bigint); anything with a fraction or exponent is a float
    return m[2] === undefined && m[3] === undefined ? BigInt(m[0]) : Number(m[0]);
  };
  const string = () => {
    i++;
    let out = '';
    for (;;) {
      if (i >= text.length) throw new JsonError('unterminated string');
      const c = text[i];
      if (c === '"') { i++; return out; }
      if (c < ' ') throw new JsonError('control character in a string');
      if (c === '\\') {
        const e = text[i + 1];
        const simple = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' }[e];
        if (simple !== undefined) { out += simple; i += 2; continue; }
        if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
          out += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
          i += 6;
          continue;
        }
        throw new JsonError('invalid escape');
      }
      out += c;
      i++;
    }
  };
  const v = value(0);
  ws();
  if (i !== text.length) throw new JsonError('extra data after the value');
  return v;
}

const isObj = (v) => v !== null && typeof v === 'object' && Array.isArray(v.pairs);
const isInt = (v) => typeof v === 'bigint';

/**
 * Parse and check a payload's safetensors header (spec 6.1, checks 1-5).
 * @param {Uint8Array} prefix  at least the first 8 + N bytes of the decoded payload (more is fine)
 * @param {number} decodedSize  the decoded payload's length
 * @param {number} base  offset reported for the payload's first byte
 * @param {boolean} flat  a compressed payload: every error at `base`
 * @returns {{entries: Array<{name, dtype, shape: number[], begin: number, end: number}>, dataStart: number, n: number}}
 */
export function parseHeader(prefix, decodedSize, base, flat) {
  const atJson = flat ? base : base + 8;
  const fail = (code, msg, offset, expected, got) => new SldpFormatError(code, msg, { offset, expected, got });
  if (decodedSize < 8 || prefix.length < 8) {
    throw fail('E_TRUNCATED', 'payload too short for a safetensors header', base, '>= 8 bytes', decodedSize);
  }
  const nBig = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (nBig > BigInt(MAX_ST_HEADER_BYTES)) throw fail('E_LIMIT', 'safetensors header larger than the limit', base, `<= ${MAX_ST_HEADER_BYTES}`, nBig);
  const n = Number(nBig);
  if (8 + n > decodedSize) throw fail('E_ST_HEADER', 'safetensors header length runs past the payload', base, `<= ${decodedSize - 8}`, n);
  if (prefix.length < 8 + n) throw fail('E_TRUNCATED', 'payload ends inside the safetensors header', base + prefix.length, 8 + n, prefix.length);
  let obj;
  try {
    obj = parseJson(utf8dec.decode(prefix.subarray(8, 8 + n)));
  } catch (e) {
    if (!(e instanceof JsonError) && !(e instanceof TypeError)) throw e;
    throw fail('E_ST_HEADER', `safetensors header is not valid UTF-8 JSON (${e.message})`, atJson, 'a JSON object', 'something else');
  }
  if (!isObj(obj)) throw fail('E_ST_HEADER', 'safetensors header is not a JSON object', atJson, 'object', Array.isArray(obj) ? 'array' : typeof obj);
  if (obj.pairs.length > MAX_TENSORS + 1) throw fail('E_LIMIT', 'too many tensors in the safetensors header', atJson, `<= ${MAX_TENSORS}`, obj.pairs.length);
  const seen = new Set();
  for (const [name] of obj.pairs) {
    // a repeated tensor name is E_NAME, whatever else is wrong (spec 6.1 check order)
    if (seen.has(name)) throw fail('E_NAME', 'safetensors header repeats a tensor name', atJson, 'distinct names', name);
    seen.add(name);
  }
  const dataStart = 8 + n;
  const dataLen = BigInt(decodedSize - dataStart);
  const entries = [];
  for (const [name, ent] of obj.pairs) {
    if (name === '__metadata__') throw fail('E_ST_HEADER', '__metadata__ is not allowed in an SLDP payload', atJson, 'no __metadata__', name);
    const keys = isObj(ent) ? ent.pairs.map(([k]) => k) : null;
    if (keys === null || [...keys].sort().join(',') !== 'data_offsets,dtype,shape') {
      throw fail('E_ST_HEADER', `tensor entry ${JSON.stringify(name)} must have exactly dtype, shape, data_offsets (once each)`, atJson, '{dtype, shape, data_offsets}', keys);
    }
    const f = Object.fromEntries(ent.pairs);
    const { dtype, shape, data_offsets: offs } = f;
    if (typeof dtype !== 'string' || !Object.prototype.hasOwnProperty.call(DTYPE_ITEMSIZE, dtype)) {
      throw fail('E_DTYPE', `tensor ${JSON.stringify(name)} has a dtype SLDP does not allow`, atJson, Object.keys(DTYPE_ITEMSIZE).join(' | '), String(dtype));
    }
    if (!Array.isArray(shape) || shape.length > MAX_RANK || !shape.every((d) => isInt(d) && d >= 0n && d < 2n ** 53n)) {
      throw fail('E_ST_HEADER', `tensor ${JSON.stringify(name)} has an invalid shape`, atJson, `list of <= ${MAX_RANK} non-negative ints`, 'something else');
    }
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => isInt(o) && o >= 0n) || offs[0] > offs[1]) {
      throw fail('E_ST_OFFSETS', `tensor ${JSON.stringify(name)} has invalid data_offsets`, atJson, '[begin, end] with 0 <= begin <= end', 'something else');
    }
    const span = nbytes(dtype, shape);
    if (offs[1] - offs[0] !== span) {
      throw fail('E_ST_OFFSETS', `tensor ${JSON.stringify(name)}: data_offsets span differs from dtype x shape`, atJson, span, offs[1] - offs[0]);
    }
    entries.push({ name, dtype, shape: shape.map(Number), b: offs[0], e: offs[1] });
  }
  // offsets must tile [0, dataLen) exactly: no overlap, no hole, nothing out of range
  const sorted = [...entries].sort((x, y) => (x.b < y.b ? -1 : x.b > y.b ? 1 : x.e < y.e ? -1 : x.e > y.e ? 1 : 0));
  let pos = 0n;
  for (const e of sorted) {
    if (e.b !== pos) {
      throw fail('E_ST_OFFSETS', `tensor ${JSON.stringify(e.name)} ${e.b < pos ? 'overlaps the previous tensor' : 'leaves a hole before it'}`, atJson, `begin ${pos}`, e.b);
    }
    pos = e.e;
  }
  if (pos !== dataLen) throw fail('E_ST_OFFSETS', 'tensor data does not end where the payload ends', atJson, `data length ${pos}`, dataLen);
  return {
    entries: entries.map((e) => ({ name: e.name, dtype: e.dtype, shape: e.shape, begin: Number(e.b), end: Number(e.e) })),
    dataStart,
    n,
  };
}
