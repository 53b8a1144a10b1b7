// The reader's one error type: an SLDP error code (spec section 11) and the absolute byte offset of the
// defect (spec section 11, "Offsets"), plus what was expected and found, for people.

export class SldpFormatError extends Error {
  /**
   * @param {string} code  an E_* code of spec section 11
   * @param {string} message  what is wrong, in words
   * @param {{offset?: number|null, field?: string, expected?: unknown, got?: unknown}} [where]
   */
  constructor(code, message, where = {}) {
    const { offset = null, field = undefined, expected = undefined, got = undefined } = where;
    let text = `${code}: ${message}`;
    if (offset !== null) text += ` (at byte ${offset})`;
    if (field !== undefined) text += ` [${field}]`;
    if (expected !== undefined) text += `; expected ${show(expected)}`;
    if (got !== undefined) text += `, got ${show(got)}`;
    super(text);
    this.name = 'SldpFormatError';
    this.code = code;
    this.offset = offset;
    this.field = field;
    this.expected = expected;
    this.got = got;
    this.detail = message;
  }
}

/** A signature that does not verify; `reason` is a word of annex SLDP-1-signing.md section 5. */
export class SldpSignatureError extends Error {
  constructor(reason, message) {
    super(`${reason}: ${message}`);
    this.name = 'SldpSignatureError';
    this.reason = reason;
  }
}

/** A caller mistake (a key that is not a P-256 public key, a tensor that does not exist). */
export class SldpUsageError extends Error {
  constructor(message) {
    super(message);
    this.name = 'SldpUsageError';
  }
}

function show(v) {
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}...` : v);
  if (typeof v === 'bigint') return v.toString();
  try {
    const s = JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
    return s === undefined ? String(v) : s.length > 120 ? `${s.slice(0, 120)}...` : s;
  } catch {
    return String(v);
  }
}
