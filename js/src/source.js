// Random access to a file's bytes without reading all of it: an in-memory buffer or a browser Blob/File.
// (Node files: src/node.js, kept apart so that this module has no Node import.)

import { SldpFormatError } from './errors.js';

/** Bytes already in memory. */
export class BytesSource {
  constructor(bytes, name = '') {
    this.bytes = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
    this.size = this.bytes.length;
    this.name = name;
  }
  async read(offset, n) {
    return this.bytes.subarray(offset, offset + n);
  }
  async close() {}
}

/** A browser Blob or File: each read is a slice, so opening a file reads header and manifest only. */
export class BlobSource {
  constructor(blob, name = blob.name || '') {
    this.blob = blob;
    this.size = blob.size;
    this.name = name;
  }
  async read(offset, n) {
    let buf;
    try {
      buf = await this.blob.slice(offset, offset + n).arrayBuffer();
    } catch (e) {
      throw new SldpFormatError('E_IO', `cannot read file: ${e && e.message ? e.message : e}`, { offset });
    }
    if (buf.byteLength !== n) {
      throw new SldpFormatError('E_TRUNCATED', 'file ended while reading', { offset: offset + buf.byteLength, expected: n, got: buf.byteLength });
    }
    return new Uint8Array(buf);
  }
  async close() {}
}
