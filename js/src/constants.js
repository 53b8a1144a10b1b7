// Every number, name and code of SLDP 1.0 (spec/SLDP-1.md) that the reader needs, in one place.
// Mirrors sldpack/format/constants.py; js/test/constants.test.mjs checks the spec's tables against it.

export const MAGIC = Uint8Array.of(0x89, 0x53, 0x4c, 0x44, 0x50, 0x0d, 0x0a, 0x0a);
// what a text-mode transfer makes of the magic's bytes 5.. (spec section 3)
export const TEXT_MODE_TAILS = [Uint8Array.of(0x0a, 0x0a), Uint8Array.of(0x0d, 0x0d, 0x0a), Uint8Array.of(0x0d, 0x0a, 0x0d)];
export const VERSION_MAJOR = 1;
export const VERSION_MINOR = 0;
export const HEADER_SIZE = 64;
export const HEADER_DIGEST_PREFIX = 32;

export const OFF_VERSION_MAJOR = 8;
export const OFF_RESERVED = 12;
export const OFF_MANIFEST_LENGTH = 16;
export const OFF_PAYLOAD_LENGTH = 24;
export const OFF_MANIFEST_SHA256 = 32;

export const MAX_MANIFEST_BYTES = 1048576;
export const MAX_TENSORS = 4096;
export const MAX_RANK = 8;
export const MAX_TENSOR_NAME_BYTES = 256;
export const MAX_ST_HEADER_BYTES = 1048576;
export const MAX_DECODED_PAYLOAD = 4294967296;
export const MAX_MSGPACK_DEPTH = 32;
export const MAX_PROBE_COUNT = 65536;
export const MAX_SKETCH_VALUES = 64;
// provenance times (spec 5.3): RFC 3339 in UTC with Z, optional fraction; the calendar is checked apart
export const UTC_TIME_PATTERN = /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?Z$/;

export const DTYPE_ITEMSIZE = Object.freeze({ F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, U8: 1 });
export const ROLES = Object.freeze(['images', 'labels', 'lrs', 'bn_stats', 'theta0_check', 'extra']);
export const ARCH_ID_PATTERN = /^[a-z][a-z0-9_]{0,62}@(0|[1-9][0-9]{0,8})$/;
export const INIT_RNG = 'philox4x32-10';
export const INIT_SCHEMES = Object.freeze(['xavier_normal', 'xavier_uniform', 'kaiming_uniform', 'kaiming_normal', 'zeros', 'ones']);
export const COMPRESSIONS = Object.freeze(['none', 'zstd']);
export const LABEL_TRANSFORMS = Object.freeze(['softmax', 'identity']);
export const ZSTD_MAGIC = Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd);

export const ERROR_CODES = Object.freeze({
  E_IO: 'the file cannot be opened or read',
  E_TRUNCATED: 'the file ends before a declared structure ends',
  E_MAGIC: 'the first 8 bytes are not the SLDP magic',
  E_TEXT_MODE: 'the magic shows CRLF/LF translation: the file went through a text-mode transfer',
  E_VERSION_MAJOR: 'the major version is not one this reader implements',
  E_RESERVED: 'a reserved header field is not zero',
  E_TRAILING: 'bytes follow the declared end of the file',
  E_LIMIT: 'a declared size or count exceeds a hard limit of the spec',
  E_MANIFEST_DIGEST: "header bytes 0-31 and the manifest do not match the header's manifest_sha256",
  E_MSGPACK: 'the manifest is not well-formed msgpack',
  E_MSGPACK_TYPE: 'the manifest uses a msgpack type the spec forbids (ext, float32, non-string key)',
  E_MSGPACK_NONCANONICAL: 'the manifest is valid msgpack but not in canonical form',
  E_MSGPACK_DUPLICATE_KEY: 'a msgpack map repeats a key',
  E_MSGPACK_DEPTH: 'the manifest nests deeper than the limit',
  E_SCHEMA: 'a manifest field is missing, of the wrong type or out of range',
  E_ZSTD: 'the payload is not a single valid zstd frame',
  E_ZSTD_SIZE: "the zstd frame's declared or actual size differs from payload.decoded_size",
  E_ST_HEADER: 'the safetensors header is malformed',
  E_ST_OFFSETS: 'tensor data offsets overlap, leave holes or fall outside the data section',
  E_ST_MISMATCH: "the safetensors header disagrees with the manifest's tensor table",
  E_DTYPE: 'a tensor dtype is not allowed',
  E_NAME: 'a tensor name is empty, too long, has a control character or is duplicated',
  E_TENSOR_DIGEST: "a tensor's bytes do not match its sha256",
  E_PAYLOAD_DIGEST: "a compressed payload's stored bytes do not match payload.stored_sha256",
  E_NONFINITE: 'a learning rate (or other value required finite) is NaN or infinite',
});

/** The one role a tensor name implies (spec section 6.2). */
export function roleForName(name) {
  if (name === 'images' || name === 'labels' || name === 'lrs') return name;
  if (name.startsWith('bn.') && name.length > 3) return 'bn_stats';
  if (name.startsWith('theta0.') && name.length > 7) return 'theta0_check';
  return 'extra';
}
