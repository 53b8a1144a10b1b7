// The payload's one Zstandard frame (spec section 6.1): frame header rules checked here, before the
// vendored decoder (fzstd) sees a byte; the frame's extent found by walking its block headers (so that a
// second frame, a skippable frame after it or a cut frame is E_ZSTD without decoding); decompression
// bounded by payload.decoded_size (E_ZSTD_SIZE as soon as the output would exceed it).

import { _rzb, _rzfh } from '../vendor/fzstd.mjs';
import { SldpFormatError } from './errors.js';

// the largest window accepted (as sldpack's reader: zstd's max_window_size 2^27); the decoder allocates it
export const MAX_WINDOW = 2 ** 27;
const SLICE_MS = 40; // decoding time between progress reports and pauses (a page stays responsive)
const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());
const HEADROOM = (1 << 17) + 64; // one maximal block (128 KiB) past decoded_size

function fail(code, msg, base, expected, got) {
  return new SldpFormatError(code, msg, { offset: base, expected, got });
}

/**
 * Parse the frame header. Returns {headerLength, contentSize (number|null), windowSize, checksum}.
 * @throws {SldpFormatError} E_ZSTD / E_ZSTD_SIZE at `base` (the payload's first byte)
 */
export function frameHeader(stored, decodedSize, base) {
  if (stored.length >= 4) {
    const m = (stored[0] | (stored[1] << 8) | (stored[2] << 16) | (stored[3] << 24)) >>> 0;
    if ((m & 0xfffffff0) >>> 0 === 0x184d2a50) throw fail('E_ZSTD', 'a skippable zstd frame is not allowed in the payload', base, 'one Zstandard frame', 'skippable frame');
  }
  if (stored.length < 4 || stored[0] !== 0x28 || stored[1] !== 0xb5 || stored[2] !== 0x2f || stored[3] !== 0xfd) {
    throw fail('E_ZSTD', 'payload is not a zstd frame', base, '28b52ffd', 'other bytes');
  }
  if (stored.length < 5) throw fail('E_ZSTD', 'zstd frame is truncated', base, 'a frame header', 'end of payload');
  const fhd = stored[4];
  // bit 4 unused, bit 3 reserved: a decoder may ignore bit 4, SLDP does not (no free bits)
  if (fhd & 0x18) throw fail('E_ZSTD', 'zstd frame header descriptor has its unused or reserved bit set', base, 'bits 3 and 4 zero', `0x${fhd.toString(16)}`);
  if (fhd & 0x03) throw fail('E_ZSTD', 'zstd frame names a dictionary; SLDP payloads are compressed without one', base, 'Dictionary_ID_flag 0', `0x${fhd.toString(16)}`);
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const checksum = (fhd >> 2) & 1;
  const fcsBytes = fcsFlag === 0 ? single : 1 << fcsFlag;
  const headerLength = 5 + (single ? 0 : 1) + fcsBytes;
  if (stored.length < headerLength) throw fail('E_ZSTD', 'zstd frame header is truncated', base, `${headerLength} bytes`, stored.length);
  let contentSize = null;
  if (fcsBytes > 0) {
    let v = 0n;
    for (let i = fcsBytes - 1; i >= 0; i--) v = (v << 8n) | BigInt(stored[5 + (single ? 0 : 1) + i]);
    if (fcsBytes === 2) v += 256n;
    contentSize = v;
  }
  let windowSize;
  if (single) windowSize = Number(contentSize);
  else {
    const wd = stored[5];
    const b = 2 ** (10 + (wd >> 3));
    windowSize = b + (b / 8) * (wd & 7);
  }
  // a declared content size is checked before decompressing (spec 6.1)
  if (contentSize !== null && contentSize !== BigInt(decodedSize)) {
    throw fail('E_ZSTD_SIZE', 'zstd frame declares a size other than payload.decoded_size', base, decodedSize, contentSize);
  }
  if (windowSize > MAX_WINDOW) throw fail('E_ZSTD', 'zstd frame window is larger than this reader allows', base, `<= ${MAX_WINDOW}`, windowSize);
  return { headerLength, contentSize, windowSize, checksum };
}

/** The frame's length in bytes, from its block headers; E_ZSTD if it is cut short or bytes follow it. */
export function frameLength(stored, hdr, base) {
  let p = hdr.headerLength;
  for (;;) {
    if (p + 3 > stored.length) throw fail('E_ZSTD', 'zstd frame is truncated', base, 'complete frame', 'end of payload');
    const bh = stored[p] | (stored[p + 1] << 8) | (stored[p + 2] << 16);
    const last = bh & 1;
    const type = (bh >> 1) & 3;
    const size = bh >>> 3;
    if (type === 3) throw fail('E_ZSTD', 'corrupt zstd frame (reserved block type)', base, 'block type 0-2', 3);
    p += 3 + (type === 1 ? 1 : size);
    if (p > stored.length) throw fail('E_ZSTD', 'zstd frame is truncated', base, 'complete frame', 'end of payload');
    if (last) break;
  }
  p += hdr.checksum ? 4 : 0;
  if (p > stored.length) throw fail('E_ZSTD', 'zstd frame is truncated', base, 'complete frame', 'end of payload');
  if (p < stored.length) throw fail('E_ZSTD', 'bytes follow the zstd frame inside the payload', base, 'one frame', 'trailing data');
  return p;
}

/**
 * Decompress the payload's frame into exactly `decodedSize` bytes, block by block into one buffer.
 * The buffer has one block (128 KiB) of headroom, so a block that overshoots decodedSize is seen after
 * it is decoded (E_ZSTD_SIZE) without a write outside the buffer; raw and RLE blocks, whose sizes are
 * in their headers, are checked before.
 * @param {Uint8Array} stored
 * @param {number} decodedSize
 * @param {number} base  the payload's first byte (every error is reported there)
 * @param {{onProgress?: (done: number, total: number) => void, pause?: () => Promise<void>}} [opts]
 */
export async function unzstd(stored, decodedSize, base, opts = {}) {
  const hdr = frameHeader(stored, decodedSize, base);
  frameLength(stored, hdr, base);
  const out = new Uint8Array(decodedSize + HEADROOM);
  const tooBig = () => fail('E_ZSTD_SIZE', 'zstd frame decodes to more than payload.decoded_size', base, decodedSize, `> ${decodedSize}`);
  let st;
  try {
    // rzfh(dat, w) compares w with 1 using `==`, which turns a typed array into a string of all its
    // elements (seconds for 64 MiB): pass a non-1 number, then hand it the buffer, as decompress(dat, buf)
    // would have
    st = _rzfh(stored, 2);
    st.w = out;
    st.e = 0; // back-references read from `out` itself
    let last = now();
    while (!st.l) {
      const b = st.b;
      const bh = stored[b] | (stored[b + 1] << 8) | (stored[b + 2] << 16);
      const type = (bh >> 1) & 3;
      if ((type === 0 || type === 1) && st.y + (bh >>> 3) > decodedSize) throw tooBig();
      if (!_rzb(stored, st, out)) throw fail('E_ZSTD', 'zstd frame is truncated', base, 'complete frame', 'end of payload');
      st.e = st.y;
      if (st.y > decodedSize) throw tooBig();
      if (now() - last >= SLICE_MS) {
        // yield by time, not by bytes: the first blocks run before the JIT has compiled the decoder
        if (opts.onProgress) opts.onProgress(st.b, stored.length);
        if (opts.pause) await opts.pause();
        last = now();
      }
    }
  } catch (e) {
    if (e instanceof SldpFormatError) throw e;
    throw fail('E_ZSTD', `corrupt zstd frame (${e && e.message ? e.message : e})`, base, 'valid zstd frame', 'decoder error');
  }
  if (st.y !== decodedSize) {
    throw fail('E_ZSTD_SIZE', 'zstd frame decodes to a size other than payload.decoded_size', base, decodedSize, st.y);
  }
  return out.subarray(0, decodedSize);
}
