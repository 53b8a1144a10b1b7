// Node only: a file read with positioned reads (no memory map, nothing read that is not asked for).

import { open, stat } from 'node:fs/promises';
import { SldpFormatError } from './errors.js';

export class NodeFileSource {
  static async open(path) {
    let fh;
    try {
      const st = await stat(path);
      if (st.isDirectory()) throw Object.assign(new Error('is a directory, not a file'), { code: 'EISDIR' });
      fh = await open(path, 'r');
      const s = new NodeFileSource();
      s.fh = fh;
      s.size = (await fh.stat()).size;
      s.name = path;
      return s;
    } catch (e) {
      if (fh) await fh.close();
      throw new SldpFormatError('E_IO', `cannot read file: ${e && e.message ? e.message : e}`);
    }
  }
  async read(offset, n) {
    const buf = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      let r;
      try {
        ({ bytesRead: r } = await this.fh.read(buf, got, n - got, offset + got));
      } catch (e) {
        throw new SldpFormatError('E_IO', `cannot read file: ${e.message}`, { offset: offset + got });
      }
      if (r === 0) {
        throw new SldpFormatError('E_TRUNCATED', 'file ended while reading', { offset: offset + got, expected: n, got });
      }
      got += r;
    }
    return buf;
  }
  async close() {
    if (this.fh) await this.fh.close();
    this.fh = null;
  }
}

/** Open a `.sldp` file from a path (header and manifest checked now, tensors on demand). */
export async function openPath(path, opts) {
  const { openSldp } = await import('./reader.js');
  const src = await NodeFileSource.open(path);
  try {
    return await openSldp(src, opts);
  } catch (e) {
    await src.close();
    throw e;
  }
}
