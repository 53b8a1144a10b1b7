// The manifest schema (spec section 5) checked in the order of spec section 12, step 4. Every failure is
// an SldpFormatError with the offset the spec's convention gives: a value's first byte, a map key's first
// byte for name rules, the enclosing map's first byte for a missing key.
//
// Integer ranges not written as a bound in the spec's tables (in_channels <= 2^16, ...) follow the spec's
// section 5 note on ranges; they are the ranges sldpack's reader enforces.

import { SldpFormatError } from './errors.js';
import {
  ARCH_ID_PATTERN, COMPRESSIONS, DECISION_DELTA_SOURCES, DECISION_RULES, DECISION_TARGET_PATTERN, DTYPE_ITEMSIZE,
  INIT_RNG, INIT_SCHEMES, LABEL_TRANSFORMS, MAX_PROBE_COUNT, MAX_RANK, MAX_SKETCH_VALUES, MAX_TENSOR_NAME_BYTES,
  MAX_TENSORS, ROLES, UTC_TIME_PATTERN, roleForName,
} from './constants.js';

const HEX64 = /^[0-9a-f]{64}$/;
const U64_MAX = 2n ** 64n - 1n;
const utf8enc = new TextEncoder();

class Ctx {
  constructor(layout) {
    this.layout = layout;
  }
  /** offset of obj[key] (a present child) or of the map obj itself (key missing) */
  off(obj, key) {
    const m = this.layout.of(obj);
    if (key !== undefined && m && m.childOff.has(key)) return m.childOff.get(key);
    return m ? m.off : this.layout.rootOff;
  }
  /** a map's keys in file order (Object.keys would put integer-like keys first) */
  keys(obj) {
    return [...this.layout.of(obj).childOff.keys()];
  }
  kind(obj, key) {
    const m = this.layout.of(obj);
    return m ? m.childKind.get(key) : undefined;
  }
  fail(obj, key, path, message, expected, got, code = 'E_SCHEMA') {
    return new SldpFormatError(code, message, { offset: this.off(obj, key), field: path || '<root>', expected, got });
  }
}

function has(obj, key) {
  return Object.prototype.hasOwnProperty.call(obj, key);
}

function typeName(kind) {
  return kind ?? 'nothing';
}

// kind: 'map' | 'array' | 'str' | 'bool' | 'int' | 'num' (int or float)
function get(ctx, obj, path, key, kind, required = true) {
  const full = path ? `${path}.${key}` : key;
  if (!has(obj, key)) {
    if (required) throw ctx.fail(obj, undefined, full, 'required field is missing', kind, 'nothing');
    return undefined;
  }
  const k = ctx.kind(obj, key);
  const ok = kind === 'num' ? k === 'int' || k === 'float' : k === kind;
  if (!ok) throw ctx.fail(obj, key, full, 'field has the wrong type', kind, typeName(k));
  return obj[key];
}

function big(v) {
  return typeof v === 'bigint' ? v : BigInt(v);
}

function int(ctx, obj, path, key, lo = 0n, hi = U64_MAX, required = true) {
  const v = get(ctx, obj, path, key, 'int', required);
  if (v !== undefined && (big(v) < lo || big(v) > hi)) {
    throw ctx.fail(obj, key, `${path}.${key}`, 'integer out of range', `${lo}..${hi}`, v);
  }
  return v;
}

function float(ctx, obj, path, key) {
  return get(ctx, obj, path, key, 'num'); // finite: the decoder already refused NaN and infinities
}

function floats(ctx, obj, path, key) {
  const arr = get(ctx, obj, path, key, 'array');
  arr.forEach((v, i) => {
    const k = ctx.kind(arr, i);
    if (k !== 'int' && k !== 'float') {
      throw ctx.fail(arr, i, `${path}.${key}.${i}`, 'array element must be a finite number', 'finite number', typeName(k));
    }
  });
  return arr.map(Number);
}

function ints(ctx, arr, path, lo = 0n, hi = 2n ** 63n - 1n) {
  arr.forEach((v, i) => {
    if (ctx.kind(arr, i) !== 'int' || big(v) < lo || big(v) > hi) {
      throw ctx.fail(arr, i, `${path}.${i}`, 'array element must be an integer in range', `int ${lo}..${hi}`, v);
    }
  });
  return arr;
}

function hex64(ctx, obj, path, key) {
  const v = get(ctx, obj, path, key, 'str');
  if (!HEX64.test(v)) throw ctx.fail(obj, key, `${path}.${key}`, 'not a lowercase hex SHA-256 digest', '64 lowercase hex digits', v);
  return v;
}

function choice(ctx, obj, path, key, choices, required = true) {
  const v = get(ctx, obj, path, key, 'str', required);
  if (v !== undefined && !choices.includes(v)) {
    throw ctx.fail(obj, key, `${path}.${key}`, 'unknown value', choices.join(' | '), v);
  }
  return v;
}

function optMap(ctx, obj, path, key) {
  const v = get(ctx, obj, path, key, 'map', false);
  return v === undefined ? Object.create(null) : v;
}

/** Reject names the spec forbids (all E_NAME): empty, over 256 bytes, or a control character. */
export function checkTensorName(name, offset) {
  const n = utf8enc.encode(name).length;
  // eslint-disable-next-line no-control-regex
  if (n === 0 || n > MAX_TENSOR_NAME_BYTES || /[\u0000-\u001f]/.test(name)) {
    throw new SldpFormatError('E_NAME', 'tensor name is empty, too long or has control characters', {
      offset, expected: `1..${MAX_TENSOR_NAME_BYTES} UTF-8 bytes, no control characters`, got: name.slice(0, 80),
    });
  }
}

function tensorEntry(ctx, obj, path) {
  const dtype = get(ctx, obj, path, 'dtype', 'str');
  if (!has(DTYPE_ITEMSIZE, dtype)) {
    throw ctx.fail(obj, 'dtype', `${path}.dtype`, 'dtype not allowed', Object.keys(DTYPE_ITEMSIZE).sort().join(' | '), dtype, 'E_DTYPE');
  }
  const shape = get(ctx, obj, path, 'shape', 'array');
  if (shape.length > MAX_RANK) {
    throw ctx.fail(obj, 'shape', `${path}.shape`, 'tensor rank exceeds the limit', `<= ${MAX_RANK}`, shape.length, 'E_LIMIT');
  }
  ints(ctx, shape, `${path}.shape`, 0n, 2n ** 53n - 1n);
  const role = choice(ctx, obj, path, 'role', ROLES);
  const sha256 = hex64(ctx, obj, path, 'sha256');
  return { role, dtype, shape: shape.map(Number), sha256 };
}

function distill(ctx, obj, path) {
  const steps = int(ctx, obj, path, 'steps', 1n, 65536n);
  const epochs = int(ctx, obj, path, 'epochs', 1n, 65536n);
  const sched = get(ctx, obj, path, 'schedule', 'array');
  if (sched.length !== steps) {
    throw ctx.fail(obj, 'schedule', `${path}.schedule`, 'schedule needs one entry per step', steps, sched.length);
  }
  sched.forEach((s, i) => {
    if (ctx.kind(sched, i) !== 'array') {
      throw ctx.fail(sched, i, `${path}.schedule.${i}`, 'field has the wrong type', 'array', typeName(ctx.kind(sched, i)));
    }
    ints(ctx, s, `${path}.schedule.${i}`, 0n, 2n ** 31n - 1n);
  });
  sched.forEach((s, i) => {
    if (s.length === 0) throw ctx.fail(sched, i, `${path}.schedule.${i}`, 'a step must use at least one image', '>= 1 index', 0);
  });
  choice(ctx, obj, path, 'method', ['sldd', 'dd']);
  choice(ctx, obj, path, 'label_transform', LABEL_TRANSFORMS);
  choice(ctx, obj, path, 'loss', ['cross_entropy']);
  choice(ctx, obj, path, 'inner_batchnorm', ['batch_stats']);
  optMap(ctx, obj, path, 'options');
}

function labels(ctx, obj, path) {
  const names = get(ctx, obj, path, 'names', 'array');
  names.forEach((n, i) => {
    if (ctx.kind(names, i) !== 'str') throw ctx.fail(names, i, `${path}.names.${i}`, 'class name must be a string', 'str', typeName(ctx.kind(names, i)));
  });
  if (new Set(names).size !== names.length) throw ctx.fail(obj, 'names', `${path}.names`, 'class names must be distinct', 'distinct', names);
}

function imageSize(ctx, obj, path) {
  const size = ints(ctx, get(ctx, obj, path, 'image_size', 'array'), `${path}.image_size`, 1n, 65536n);
  if (size.length !== 2) throw ctx.fail(obj, 'image_size', `${path}.image_size`, 'image_size must be [height, width]', 2, size.length);
}

function preprocessing(ctx, obj, path) {
  imageSize(ctx, obj, path);
  const std = floats(ctx, obj, path, 'std');
  std.forEach((s, i) => {
    if (!(s > 0)) throw ctx.fail(obj.std, i, `${path}.std.${i}`, 'std must be positive', '> 0', s);
  });
  const mean = floats(ctx, obj, path, 'mean');
  const channels = int(ctx, obj, path, 'channels', 1n, 65536n);
  for (const [key, vals] of [['mean', mean], ['std', std]]) {
    if (vals.length !== channels) throw ctx.fail(obj, key, `${path}.${key}`, `${key} needs one value per channel`, channels, vals.length);
  }
  optMap(ctx, obj, path, 'options');
}

function replay(ctx, obj, path) {
  const tol = float(ctx, obj, path, 'tolerance');
  if (tol < 0) throw ctx.fail(obj, 'tolerance', `${path}.tolerance`, 'tolerance must not be negative', '>= 0', tol);
  if (has(obj, 'state_sketch') || has(obj, 'state_tolerance')) {
    const rawS = get(ctx, obj, path, 'state_sketch', 'map');
    const rawT = get(ctx, obj, path, 'state_tolerance', 'map');
    const sketch = ctx.keys(rawS).map((k) => [k, floats(ctx, rawS, `${path}.state_sketch`, k)]);
    for (const [k, vals] of sketch) {
      if (vals.length < 1 || vals.length > MAX_SKETCH_VALUES) {
        throw ctx.fail(rawS, k, `${path}.state_sketch.${k}`, 'a state sketch has 1..64 values per tensor', `1..${MAX_SKETCH_VALUES} values`, vals.length);
      }
    }
    for (const k of ctx.keys(rawT)) {
      const v = float(ctx, rawT, `${path}.state_tolerance`, k);
      if (v < 0) throw ctx.fail(rawT, k, `${path}.state_tolerance.${k}`, 'tolerance must not be negative', '>= 0', v);
    }
    const a = Object.keys(rawS).sort().join('\u0000');
    const b = Object.keys(rawT).sort().join('\u0000');
    if (a !== b) throw ctx.fail(obj, 'state_tolerance', `${path}.state_tolerance`, 'state_tolerance must have the keys of state_sketch', Object.keys(rawS).length, Object.keys(rawT).length);
  }
  hex64(ctx, obj, path, 'theta_opt_sha256');
  int(ctx, obj, path, 'probe_seed');
  int(ctx, obj, path, 'probe_count', 1n, BigInt(MAX_PROBE_COUNT));
  floats(ctx, obj, path, 'probe_logits');
  optMap(ctx, obj, path, 'reference');
}

// 1.1: the image-level decision rule (spec 5.10), in the order sldpack's reader checks it
function calibration(ctx, obj, path) {
  const target = get(ctx, obj, path, 'target', 'str');
  if (!DECISION_TARGET_PATTERN.test(target)) {
    throw ctx.fail(obj, 'target', `${path}.target`, 'unknown calibration target', 'max_hm | sensitivity>=X (X in [0, 1])', target);
  }
  const unit = (key, required) => {
    if (!required && !has(obj, key)) return;
    const v = Number(float(ctx, obj, path, key));
    if (!(v >= 0 && v <= 1)) throw ctx.fail(obj, key, `${path}.${key}`, 'value must be in [0, 1]', '0 <= x <= 1', v);
  };
  unit('hm', true);
  int(ctx, obj, path, 'images', 1n);
  int(ctx, obj, path, 'iteration', 0n, U64_MAX, false);
  unit('sensitivity', false);
  unit('specificity', false);
}

function decision(ctx, obj, path) {
  const rule = choice(ctx, obj, path, 'rule', DECISION_RULES);
  const positive = get(ctx, obj, path, 'positive', 'str');
  if (rule === 'argmax') {
    // delta and its sources belong to Eq. (9); a whole-image rule that names them is ambiguous
    for (const key of ['negative', 'ignored', 'delta', 'delta_source', 'calibration']) {
      if (has(obj, key)) throw ctx.fail(obj, key, `${path}.${key}`, `'${key}' is only for rule eq9`, 'absent with argmax', 'present');
    }
    return;
  }
  const negative = get(ctx, obj, path, 'negative', 'str');
  const ignored = get(ctx, obj, path, 'ignored', 'array', false) ?? [];
  ignored.forEach((n, i) => {
    if (ctx.kind(ignored, i) !== 'str') throw ctx.fail(ignored, i, `${path}.ignored.${i}`, 'class name must be a string', 'str', typeName(ctx.kind(ignored, i)));
  });
  // the classes must be distinct: the error points at the first name that repeats an earlier one
  const seen = [positive];
  const named = [[obj, 'negative', `${path}.negative`, negative], ...ignored.map((n, i) => [ignored, i, `${path}.ignored.${i}`, n])];
  for (const [o, k, p, n] of named) {
    if (seen.includes(n)) throw ctx.fail(o, k, p, 'positive, negative and ignored classes must be distinct', `not one of ${seen}`, n);
    seen.push(n);
  }
  const delta = Number(float(ctx, obj, path, 'delta'));
  if (!(delta > 0 && delta <= 1)) throw ctx.fail(obj, 'delta', `${path}.delta`, 'delta must be in (0, 1]', '0 < delta <= 1', delta);
  const source = choice(ctx, obj, path, 'delta_source', DECISION_DELTA_SOURCES);
  if (source === 'calibrated') calibration(ctx, get(ctx, obj, path, 'calibration', 'map'), `${path}.calibration`);
  else if (has(obj, 'calibration')) {
    throw ctx.fail(obj, 'calibration', `${path}.calibration`, "calibration is only for delta_source 'calibrated'", 'absent with delta_source default', 'present');
  }
}

// the model card (spec 5.11, since 1.1); the same order of checks as sldpack/format/card.py
const CARD_TEXT_FIELDS = ['name', 'summary', 'intended_use', 'limitations', 'modality', 'license', 'data_license', 'contact'];

function cardEvaluation(ctx, obj, path) {
  const value = float(ctx, obj, path, 'value');
  if (has(obj, 'ci95')) {
    const ci = floats(ctx, obj, path, 'ci95');
    if (ci.length !== 2 || !(ci[0] <= Number(value) && Number(value) <= ci[1])) {
      throw ctx.fail(obj, 'ci95', `${path}.ci95`, 'ci95 must be [low, high] with low <= value <= high', `[low <= ${value}, high >= ${value}]`, ci);
    }
  }
  get(ctx, obj, path, 'metric', 'str');
  int(ctx, obj, path, 'n', 1n);
  get(ctx, obj, path, 'split', 'str');
  get(ctx, obj, path, 'dataset', 'str', false);
}

function card(ctx, obj, path) {
  for (const key of CARD_TEXT_FIELDS) get(ctx, obj, path, key, 'str', false);
  const meanings = optMap(ctx, obj, path, 'label_meanings');
  if (has(obj, 'label_meanings')) {
    for (const k of ctx.keys(meanings)) {
      if (ctx.kind(meanings, k) !== 'str') {
        throw ctx.fail(meanings, k, `${path}.label_meanings.${k}`, 'field has the wrong type', 'str', typeName(ctx.kind(meanings, k)));
      }
    }
  }
  if (has(obj, 'input_range')) {
    const r = floats(ctx, obj, path, 'input_range');
    if (r.length !== 2 || !(r[0] < r[1])) {
      throw ctx.fail(obj, 'input_range', `${path}.input_range`, 'input_range must be [low, high] with low < high', '[low, high], low < high', r);
    }
  }
  if (has(obj, 'input_size')) {
    if (ctx.kind(obj, 'input_size') !== 'array') {
      throw ctx.fail(obj, 'input_size', `${path}.input_size`, 'field has the wrong type', 'array', typeName(ctx.kind(obj, 'input_size')));
    }
    const sz = ints(ctx, obj.input_size, `${path}.input_size`, 1n, 65536n);
    if (sz.length !== 2) throw ctx.fail(obj, 'input_size', `${path}.input_size`, 'input_size must be [height, width]', 2, sz.length);
  }
  if (has(obj, 'dataset')) {
    const ds = get(ctx, obj, path, 'dataset', 'map');
    for (const [key, required] of [['name', true], ['version', false], ['citation', false], ['url', false]]) {
      get(ctx, ds, `${path}.dataset`, key, 'str', required);
    }
  }
  if (has(obj, 'evaluation')) {
    const evals = get(ctx, obj, path, 'evaluation', 'array');
    evals.forEach((e, i) => {
      if (ctx.kind(evals, i) !== 'map') {
        throw ctx.fail(evals, i, `${path}.evaluation.${i}`, 'field has the wrong type', 'map', typeName(ctx.kind(evals, i)));
      }
      cardEvaluation(ctx, e, `${path}.evaluation.${i}`);
    });
  }
}

function arch(ctx, obj, path) {
  const id = get(ctx, obj, path, 'id', 'str');
  if (!ARCH_ID_PATTERN.test(id)) throw ctx.fail(obj, 'id', `${path}.id`, 'architecture id must look like name@version', 'name@version, e.g. convnet@1', id);
  imageSize(ctx, obj, path);
  int(ctx, obj, path, 'in_channels', 1n, 65536n);
  int(ctx, obj, path, 'num_classes', 1n, 2n ** 20n);
  get(ctx, obj, path, 'batchnorm', 'bool', false);
  optMap(ctx, obj, path, 'options');
}

function init(ctx, obj, path) {
  if (has(obj, 'theta0_sha256')) {
    const raw = get(ctx, obj, path, 'theta0_sha256', 'map');
    for (const k of ctx.keys(raw)) hex64(ctx, raw, `${path}.theta0_sha256`, k);
  }
  int(ctx, obj, path, 'seed');
  choice(ctx, obj, path, 'scheme', INIT_SCHEMES);
  choice(ctx, obj, path, 'rng', [INIT_RNG]);
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** A provenance time (spec 5.3): the grammar, then a real Gregorian date from 0001 and 00:00:00..23:59:59. */
function utcTime(ctx, obj, path, key) {
  const v = obj[key];
  const m = UTC_TIME_PATTERN.exec(v);
  let ok = m !== null;
  if (m) {
    const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
    const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
    const days = mo === 2 && leap ? 29 : DAYS_IN_MONTH[mo - 1];
    ok = y >= 1 && mo >= 1 && mo <= 12 && d >= 1 && d <= days && h <= 23 && mi <= 59 && s <= 59;
  }
  if (!ok) throw ctx.fail(obj, key, `${path}.${key}`, 'not a UTC time like 2026-11-27T01:20:00Z', 'YYYY-MM-DDThh:mm:ss[.f]Z', v);
}

function provenance(ctx, obj, path) {
  if (has(obj, 'dataset_sha256')) hex64(ctx, obj, path, 'dataset_sha256');
  if (has(obj, 'training_data_sha256')) hex64(ctx, obj, path, 'training_data_sha256');
  if (has(obj, 'command_line')) {
    const raw = get(ctx, obj, path, 'command_line', 'array');
    raw.forEach((a, i) => {
      if (ctx.kind(raw, i) !== 'str') throw ctx.fail(raw, i, `${path}.command_line.${i}`, 'command-line arguments must be strings', 'str', typeName(ctx.kind(raw, i)));
    });
  }
  if (has(obj, 'audit')) {
    const a = get(ctx, obj, path, 'audit', 'map');
    const p = `${path}.audit`;
    choice(ctx, a, p, 'verdict', ['PASS', 'FLAG']);
    hex64(ctx, a, p, 'report_sha256');
    hex64(ctx, a, p, 'images_sha256');
    get(ctx, a, p, 'tool', 'str', false);
    if (get(ctx, a, p, 'created', 'str', false) !== undefined) utcTime(ctx, a, p, 'created');
  }
  get(ctx, obj, path, 'tool', 'str');
  get(ctx, obj, path, 'created', 'str');
  utcTime(ctx, obj, path, 'created');
  optMap(ctx, obj, path, 'extra');
  get(ctx, obj, path, 'sldpack_version', 'str', false);
  if (has(obj, 'distill_config')) get(ctx, obj, path, 'distill_config', 'map');
}

function payload(ctx, obj, path) {
  const compression = choice(ctx, obj, path, 'compression', COMPRESSIONS);
  let storedSha256 = null;
  if (compression === 'zstd') storedSha256 = hex64(ctx, obj, path, 'stored_sha256');
  else if (has(obj, 'stored_sha256')) {
    throw ctx.fail(obj, 'stored_sha256', `${path}.stored_sha256`, 'stored_sha256 is only for a compressed payload', 'absent with compression none', 'present');
  }
  const storedSize = int(ctx, obj, path, 'stored_size');
  const decodedSize = int(ctx, obj, path, 'decoded_size');
  return { compression, storedSize, decodedSize, storedSha256 };
}

/**
 * Check a decoded manifest against the schema (spec 5) and return the facts the reader needs.
 * @returns {{tensors: Map<string, {role, dtype, shape: number[], sha256}>, payload: object,
 *   offsets: {storedSize: number, decodedSize: number}}}
 */
export function checkManifest(obj, layout) {
  const ctx = new Ctx(layout);
  if (layout.rootKind !== 'map') {
    throw new SldpFormatError('E_SCHEMA', 'the manifest must be a map', { offset: layout.rootOff, field: '<root>', expected: 'map', got: layout.rootKind });
  }
  const tensorsRaw = get(ctx, obj, '', 'tensors', 'map');
  const names = ctx.keys(tensorsRaw);
  if (names.length > MAX_TENSORS) {
    throw ctx.fail(obj, 'tensors', 'tensors', 'too many tensors', `<= ${MAX_TENSORS}`, names.length, 'E_LIMIT');
  }
  const tensors = new Map();
  const tmeta = layout.of(tensorsRaw);
  for (const name of names) {
    // a name error is about the map key: it points at the key (offsets convention, spec section 11)
    checkTensorName(name, tmeta.keyOff.get(name));
    const path = `tensors.${name}`;
    const entry = tensorEntry(ctx, get(ctx, tensorsRaw, 'tensors', name, 'map'), path);
    if (entry.role !== roleForName(name)) {
      throw ctx.fail(tensorsRaw[name], 'role', `${path}.role`, 'tensor name and role disagree (spec 6.2)', roleForName(name), entry.role);
    }
    tensors.set(name, entry);
  }
  const sections = [['distill', distill], ['labels', labels], ['preprocessing', preprocessing], ['replay', replay],
    ['decision', decision],
    ['card', card]];
  for (const [key, check] of sections) {
    if (has(obj, key)) check(ctx, get(ctx, obj, '', key, 'map'), key);
  }
  arch(ctx, get(ctx, obj, '', 'arch', 'map'), 'arch');
  init(ctx, get(ctx, obj, '', 'init', 'map'), 'init');
  provenance(ctx, get(ctx, obj, '', 'provenance', 'map'), 'provenance');
  optMap(ctx, obj, '', 'user');
  const pay = payload(ctx, get(ctx, obj, '', 'payload', 'map'), 'payload');
  // rules across sections, after every section on its own (spec section 12, step 4)
  if (has(obj, 'replay')) {
    const rp = obj.replay;
    const want = big(rp.probe_count) * big(obj.arch.num_classes);
    if (BigInt(rp.probe_logits.length) !== want) {
      throw ctx.fail(rp, 'probe_logits', 'replay.probe_logits', 'probe_logits needs probe_count x arch.num_classes values', want, rp.probe_logits.length);
    }
  }
  if (has(obj, 'decision') && has(obj, 'labels')) {
    const dc = obj.decision;
    const names = obj.labels.names;
    for (const key of ['positive', 'negative']) {
      if (has(dc, key) && !names.includes(dc[key])) {
        throw ctx.fail(dc, key, `decision.${key}`, 'the decision names a class the file does not have', names.join(' | '), dc[key]);
      }
    }
    (dc.ignored ?? []).forEach((n, i) => {
      if (!names.includes(n)) throw ctx.fail(dc.ignored, i, `decision.ignored.${i}`, 'the decision names a class the file does not have', names.join(' | '), n);
    });
  }
  if (has(obj, 'card') && has(obj, 'labels') && has(obj.card, 'label_meanings')) {
    const lm = obj.card.label_meanings;
    for (const k of ctx.keys(lm)) {
      if (!obj.labels.names.includes(k)) {
        // the defect is the map key (offsets convention, spec section 11): point at the key
        throw new SldpFormatError('E_SCHEMA', 'the card explains a class the file does not have', {
          offset: layout.of(lm).keyOff.get(k), field: `card.label_meanings.${k}`, expected: obj.labels.names.join(' | '), got: k,
        });
      }
    }
  }
  const pm = layout.of(obj.payload);
  return {
    tensors,
    payload: pay,
    offsets: { storedSize: pm.childOff.get('stored_size'), decodedSize: pm.childOff.get('decoded_size') },
  };
}
