// sldp-js: a reader of SLDP 1.0 `.sldp` files (spec/SLDP-1.md) for browsers and Node >= 18.
export { openSldp, SldpFile, toTyped } from './reader.js';
export { BytesSource, BlobSource } from './source.js';
export { SldpFormatError, SldpSignatureError, SldpUsageError } from './errors.js';
export { toJsonText, hex } from './msgpack.js';
export { sha256Hex } from './sha256.js';
export { verifySignature, keyIdOfPem } from './signing.js';
export * as constants from './constants.js';
