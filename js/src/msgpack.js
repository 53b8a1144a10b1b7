// Canonical msgpack decoding (spec section 4): a strict one-pass decoder that reports the absolute byte
// offset of every defect and records where each value and map key sits, so that schema errors can point
// at the right byte (spec section 11, "Offsets").
//
// Values: nil -> null, bool -> boolean, int -> number (bigint outside +-2^53), float64 -> number,
// str -> string, bin -> Uint8Array, array -> Array, map -> null-prototype object (keys in file order).
// Because an int and a float64 both become numbers, the decoder also records each value's msgpack kind.

import { SldpFormatError } from './errors.js';
import { MAX_MSGPACK_DEPTH } from './constants.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Where each value of a decoded manifest sits. `of(container)` gives, for a map or array:
 * `{off, kind: 'map'|'array', childOff: Map<key|index, offset>, keyOff: Map<key, offset>, childKind: Map<...>}`
 * (offsets are absolute file offsets).
 */
export class Layout {
  constructor() {
    this.meta = new WeakMap();
    this.rootOff = 0;
    this.rootKind = 'nil';
  }
  of(container) {
    return this.meta.get(container);
  }
}

class Decoder {
  constructor(data, base) {
    this.d = data;
    this.dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.pos = 0;
    this.base = base;
    this.layout = new Layout();
  }

  fail(code, msg, at, expected, got) {
    return new SldpFormatError(code, msg, { offset: this.base + at, expected, got });
  }

  need(n, at) {
    if (n > this.d.length - this.pos) {
      throw this.fail('E_MSGPACK', 'manifest ends inside a msgpack value', at, `${n} more bytes`, this.d.length - this.pos);
    }
  }

  uint(width, at) {
    this.need(width, at);
    const p = this.pos;
    this.pos += width;
    if (width === 1) return this.d[p];
    if (width === 2) return this.dv.getUint16(p);
    if (width === 4) return this.dv.getUint32(p);
    return this.dv.getBigUint64(p);
  }

  noncanon(at, what) {
    return this.fail('E_MSGPACK_NONCANONICAL', `${what} is not in canonical (shortest) form`, at,
      'the shortest form', `byte 0x${this.d[at].toString(16).padStart(2, '0')}`);
  }

  // returns [value, kind]
  value(depth) {
    const at = this.pos;
    if (depth > MAX_MSGPACK_DEPTH) {
      throw this.fail('E_MSGPACK_DEPTH', 'manifest nests too deeply', at, `depth <= ${MAX_MSGPACK_DEPTH}`, depth);
    }
    this.need(1, at);
    const b = this.d[this.pos++];
    if (b <= 0x7f) return [b, 'int'];
    if (b >= 0xe0) return [b - 0x100, 'int'];
    if (b >= 0x80 && b <= 0x8f) return [this.map(b & 0x0f, depth, at), 'map'];
    if (b >= 0x90 && b <= 0x9f) return [this.array(b & 0x0f, depth, at), 'array'];
    if (b >= 0xa0 && b <= 0xbf) return [this.string(b & 0x1f, at), 'str'];
    switch (b) {
      case 0xc0: return [null, 'nil'];
      case 0xc2: return [false, 'bool'];
      case 0xc3: return [true, 'bool'];
      case 0xc1:
        throw this.fail('E_MSGPACK', 'byte 0xc1 is never used in msgpack', at, 'a type byte', '0xc1');
      case 0xc4: case 0xc5: case 0xc6: {
        const width = b === 0xc4 ? 1 : b === 0xc5 ? 2 : 4;
        const n = this.uint(width, at);
        if (width > 1 && n < 2 ** (4 * width)) throw this.noncanon(at, 'bin length');
        this.need(n, at);
        const out = this.d.slice(this.pos, this.pos + n);
        this.pos += n;
        return [out, 'bin'];
      }
      case 0xc7: case 0xc8: case 0xc9: case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        throw this.fail('E_MSGPACK_TYPE', 'ext types are not allowed in the manifest', at, 'no ext',
          `0x${b.toString(16)}`);
      case 0xca:
        throw this.fail('E_MSGPACK_TYPE', 'float32 is not allowed in the manifest (floats are float64)', at,
          '0xcb float64', '0xca float32');
      case 0xcb: {
        this.need(8, at);
        const v = this.dv.getFloat64(this.pos);
        this.pos += 8;
        if (!Number.isFinite(v)) {
          throw this.fail('E_NONFINITE', 'NaN and infinity are not allowed in the manifest', at, 'finite float', String(v));
        }
        return [v, 'float'];
      }
      case 0xcc: case 0xcd: case 0xce: case 0xcf: {
        const width = 1 << (b - 0xcc);
        const n = this.uint(width, at);
        const floor = width === 1 ? 0x80 : width === 8 ? 2n ** 32n : 2 ** (4 * width);
        if (n < floor) throw this.noncanon(at, 'unsigned integer');
        return [width === 8 ? narrow(n) : n, 'int'];
      }
      case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        const width = 1 << (b - 0xd0);
        this.need(width, at);
        const p = this.pos;
        this.pos += width;
        const n = width === 1 ? this.dv.getInt8(p) : width === 2 ? this.dv.getInt16(p)
          : width === 4 ? this.dv.getInt32(p) : this.dv.getBigInt64(p);
        if (n >= 0) throw this.noncanon(at, 'non-negative integer in a signed form');
        const floor = width === 1 ? -32 : width === 8 ? -(2n ** 31n) : -(2 ** (4 * width - 1));
        if (n >= floor) throw this.noncanon(at, 'negative integer');
        return [width === 8 ? narrow(n) : n, 'int'];
      }
      case 0xd9: case 0xda: case 0xdb: {
        const width = b === 0xd9 ? 1 : b === 0xda ? 2 : 4;
        const n = this.uint(width, at);
        if (n < (width === 1 ? 32 : 2 ** (4 * width))) throw this.noncanon(at, 'string length');
        return [this.string(n, at), 'str'];
      }
      case 0xdc: case 0xdd: {
        const width = b === 0xdc ? 2 : 4;
        const n = this.uint(width, at);
        if (n < (width === 2 ? 16 : 65536)) throw this.noncanon(at, 'array length');
        return [this.array(n, depth, at), 'array'];
      }
      case 0xde: case 0xdf: {
        const width = b === 0xde ? 2 : 4;
        const n = this.uint(width, at);
        if (n < (width === 2 ? 16 : 65536)) throw this.noncanon(at, 'map length');
        return [this.map(n, depth, at), 'map'];
      }
      default:
        throw this.fail('E_MSGPACK', 'unknown type byte', at, 'a type byte', `0x${b.toString(16)}`);
    }
  }

  string(n, at) {
    this.need(n, at);
    const raw = this.d.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return utf8.decode(raw);
    } catch {
      // offsets convention: a manifest error points at the first byte of the offending value
      throw this.fail('E_MSGPACK', 'string is not valid UTF-8', at, 'UTF-8', 'invalid bytes');
    }
  }

  bound(n, perItem, at, what) {
    // every element needs at least one byte: bound the count by what remains before allocating
    if (n * perItem > this.d.length - this.pos) {
      throw this.fail('E_MSGPACK', `${what} declares more elements than bytes remain`, at,
        `<= ${Math.floor((this.d.length - this.pos) / perItem)} elements`, n);
    }
  }

  array(n, depth, at) {
    this.bound(n, 1, at, 'array');
    const out = [];
    const childOff = new Map();
    const childKind = new Map();
    for (let i = 0; i < n; i++) {
      childOff.set(i, this.base + this.pos);
      const [v, kind] = this.value(depth + 1);
      childKind.set(i, kind);
      out.push(v);
    }
    this.layout.meta.set(out, { off: this.base + at, kind: 'array', childOff, childKind, keyOff: null });
    return out;
  }

  map(n, depth, at) {
    this.bound(n, 2, at, 'map');
    const out = Object.create(null);
    const childOff = new Map();
    const childKind = new Map();
    const keyOff = new Map();
    let prev = null;
    for (let i = 0; i < n; i++) {
      const kat = this.pos;
      const kb = kat < this.d.length ? this.d[kat] : null;
      const isStr = kb !== null && ((kb >= 0xa0 && kb <= 0xbf) || kb === 0xd9 || kb === 0xda || kb === 0xdb);
      if (!isStr) {
        throw this.fail('E_MSGPACK_TYPE', 'map keys must be strings', kat, 'str key',
          kb === null ? 'end of data' : `type byte 0x${kb.toString(16)}`);
      }
      const [key] = this.value(depth + 1);
      const kraw = this.d.subarray(this.pos - utf8Length(key), this.pos);
      if (prev !== null) {
        const c = compareBytes(kraw, prev);
        if (c === 0) {
          throw this.fail('E_MSGPACK_DUPLICATE_KEY', `map repeats key ${JSON.stringify(key)}`, kat, 'distinct keys', key);
        }
        if (c < 0) {
          throw this.fail('E_MSGPACK_NONCANONICAL', 'map keys are not sorted by UTF-8 bytes', kat,
            'a key after the previous one', key);
        }
      }
      prev = kraw;
      keyOff.set(key, this.base + kat);
      childOff.set(key, this.base + this.pos);
      const [v, kind] = this.value(depth + 1);
      childKind.set(key, kind);
      out[key] = v;
    }
    this.layout.meta.set(out, { off: this.base + at, kind: 'map', childOff, childKind, keyOff });
    return out;
  }
}

const utf8enc = new TextEncoder();
function utf8Length(s) {
  return utf8enc.encode(s).length;
}

function narrow(n) {
  // a 64-bit integer: a number when it is exact as one, else a bigint (spec section 14, large integers)
  return n >= -(2n ** 53n) + 1n && n <= 2n ** 53n - 1n ? Number(n) : n;
}

/** Bytewise comparison of two Uint8Arrays: <0, 0 or >0. */
export function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}

/**
 * Decode one canonical msgpack value spanning all of `data`.
 * @param {Uint8Array} data  the manifest bytes
 * @param {number} base  absolute file offset of data[0]
 * @returns {{value: unknown, layout: Layout}}
 * @throws {SldpFormatError} E_MSGPACK, E_MSGPACK_TYPE, E_MSGPACK_NONCANONICAL, E_MSGPACK_DUPLICATE_KEY,
 *   E_MSGPACK_DEPTH or E_NONFINITE with the byte offset
 */
export function decode(data, base = 0) {
  const dec = new Decoder(data, base);
  const [value, kind] = dec.value(0);
  dec.layout.rootKind = kind;
  dec.layout.rootOff = base;
  if (dec.pos !== data.length) {
    throw dec.fail('E_MSGPACK', "bytes follow the manifest's msgpack value", dec.pos, 'end of manifest',
      `${data.length - dec.pos} more bytes`);
  }
  return { value, layout: dec.layout };
}

/** The JSON form sidecars use for a decoded manifest (bin -> {"$bin": hex}); bigints as exact digits. */
export function toJsonText(v) {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return JSON.stringify(v);
  if (typeof v === 'string') return JSON.stringify(v);
  if (v instanceof Uint8Array) return `{"$bin":${JSON.stringify(hex(v))}}`;
  if (Array.isArray(v)) return `[${v.map(toJsonText).join(',')}]`;
  return `{${Object.keys(v).map((k) => `${JSON.stringify(k)}:${toJsonText(v[k])}`).join(',')}}`;
}

export function hex(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += bytes[i].toString(16).padStart(2, '0');
  return s;
}
