// The SLDP viewer: one static page over sldp-js. Opens a file (picker, drop, or ?url=), checks it as
// spec/SLDP-1.md section 12 says, and shows what it holds. Nothing leaves the page.
// Every failure is shown in the page (code and byte offset); nothing is left to an uncaught exception.

import { BlobSource, openSldp, SldpFormatError, verifySignature, sha256Hex, constants } from '../js/src/index.js';

const $ = (id) => document.getElementById(id);
const pause = () => new Promise((resolve) => setTimeout(resolve, 0));
const FETCH_LIMIT = constants.HEADER_SIZE + constants.MAX_MANIFEST_BYTES + constants.MAX_DECODED_PAYLOAD;
const MONTAGE_MAX = 48; // images drawn; the rest are counted, not drawn

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

function fmtBytes(n) {
  // binary units, as `sldp report` prints them
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(2)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(2)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

function show(v) {
  if (v === undefined) return '—';
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return `<${v.length} bytes>`;
  if (typeof v === 'object' && v !== null) {
    return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x instanceof Uint8Array ? `<${x.length} bytes>` : x));
  }
  return String(v);
}

function status(text) {
  $('status').textContent = text;
}

function setProgress(label, done, total) {
  $('progress-box').hidden = false;
  $('progress-label').textContent = `${label}: ${fmtBytes(done)} of ${fmtBytes(total)}`;
  $('progress').max = total || 1;
  $('progress').value = done;
}

/** OK / FAIL badge: the word carries the meaning, the colour only repeats it. */
function badge(ok, word = ok ? 'OK' : 'FAIL') {
  return el('span', { class: `badge ${ok ? 'ok' : 'bad'}` }, `${ok ? '✓' : '✗'} ${word}`);
}

function kvTable(caption, rows) {
  const t = el('table', {}, el('caption', { class: 'sr-caption', text: caption }));
  for (const [field, label, value] of rows) {
    if (value === undefined) continue;
    t.append(el('tr', {}, el('th', { scope: 'row', text: label }), el('td', { 'data-field': field }, value instanceof Node ? value : show(value))));
  }
  return t;
}

function section(id, title, ...children) {
  return el('section', { id, 'aria-labelledby': `${id}-h` }, el('h2', { id: `${id}-h`, text: title }), ...children);
}

function errorText(e) {
  return `${e.code} at byte ${e.offset === null ? '?' : e.offset}: ${e.detail}`;
}

// --- sections ----------------------------------------------------------------------------------

function renderInvalid(out, e, name, size) {
  out.append(section('summary', 'Result',
    el('p', { class: 'verdict' }, badge(false, 'INVALID'), ' ', el('span', { id: 'verdict', text: 'INVALID' })),
    el('div', { class: 'errorbox', role: 'alert' },
      el('p', {}, 'Error code ', el('strong', { id: 'error-code', text: e.code }), ' at byte offset ', el('strong', { id: 'error-offset', text: e.offset === null ? 'unknown' : String(e.offset) })),
      el('p', { id: 'error-message', text: e.message }),
      el('p', {}, `Meaning: ${constants.ERROR_CODES[e.code] || 'unknown code'}.`)),
    kvTable('File', [['file.name', 'File', name], ['file.size', 'Size', `${size} bytes (${fmtBytes(size)})`]])));
}

function manifestRows(f) {
  const m = f.manifest;
  const a = m.arch || {};
  const i = m.init || {};
  const d = m.distill;
  const p = m.provenance || {};
  const bnTensors = [...f.tensors.values()].filter((t) => t.role === 'bn_stats').length;
  const rows = [
    ['arch.id', 'Architecture', a.id],
    ['arch.in_channels', 'Input channels', a.in_channels],
    ['arch.num_classes', 'Classes', a.num_classes],
    ['arch.image_size', 'Image size (H × W)', a.image_size && a.image_size.join(' × ')],
    ['arch.options', 'Architecture options', a.options],
    ['init.seed', 'Init seed', i.seed],
    ['init.scheme', 'Init scheme', i.scheme],
    ['init.rng', 'RNG', i.rng],
    ['bn.mode', 'Batch norm', `${a.batchnorm ? 'yes' : 'no'}${d ? `; inner steps use ${d.inner_batchnorm}` : ''}; ${bnTensors} stored BN statistics tensor(s)`],
  ];
  if (d) {
    rows.push(['distill.method', 'Method', d.method === 'sldd' ? 'sldd (learned soft labels)' : `${d.method} (fixed one-hot labels)`],
      ['distill.steps', 'Steps per epoch', d.steps], ['distill.epochs', 'Epochs', d.epochs],
      ['distill.T', 'Learning rates (T = steps × epochs)', Number(d.steps) * Number(d.epochs)],
      ['distill.schedule', 'Schedule (images per step)', d.schedule.map((s) => s.length).join(', ')],
      ['distill.label_transform', 'Label transform', d.label_transform], ['distill.loss', 'Loss', d.loss]);
  } else rows.push(['distill', 'Replay schedule', 'absent (the file cannot be replayed)']);
  if (m.labels) rows.push(['labels.names', 'Class names', m.labels.names.join(', ')]);
  if (m.preprocessing) {
    const q = m.preprocessing;
    rows.push(['preprocessing', 'Preprocessing', `(x/255 − mean) / std, mean ${show(q.mean)}, std ${show(q.std)}, ${q.channels} channel(s), ${q.image_size.join(' × ')}`]);
  }
  if (m.replay) rows.push(['replay', 'Replay fingerprint', `${m.replay.probe_count} probes, tolerance ${m.replay.tolerance}, theta_opt ${m.replay.theta_opt_sha256.slice(0, 16)}…`]);
  rows.push(['provenance.tool', 'Made by', p.tool], ['provenance.created', 'Created', p.created],
    ['provenance.sldpack_version', 'sldpack version', p.sldpack_version],
    ['provenance.dataset_sha256', 'Data set fingerprint', p.dataset_sha256],
    ['provenance.training_data_sha256', 'Training data digest', p.training_data_sha256],
    ['provenance.command_line', 'Command line', p.command_line && p.command_line.join(' ')]);
  if (p.audit) {
    const images = f.tensors.get('images');
    const bound = images !== undefined && images.sha256 === p.audit.images_sha256;
    rows.push(['provenance.audit', 'Privacy audit', el('span', {},
      el('strong', { text: p.audit.verdict }), `, ${bound ? 'bound to these images' : 'STALE: the images changed since the audit'}`,
      p.audit.created ? `, ${p.audit.created}` : '')]);
  } else rows.push(['provenance.audit', 'Privacy audit', 'not recorded']);
  const user = m.user || {};
  for (const k of Object.keys(user)) rows.push([`user.${k}`, `Model card: ${k}`, user[k]]);
  return rows;
}

function digestTable(f, results) {
  const t = el('table', { id: 'digests' }, el('thead', {}, el('tr', {}, ...['What', 'Role', 'dtype', 'Shape', 'Status'].map((h) => el('th', { scope: 'col', text: h })))));
  const body = el('tbody');
  const row = (name, role, dtype, shape, ok, detail) => body.append(el('tr', { 'data-digest': name, 'data-ok': String(ok) },
    el('td', { class: 'mono', text: name }), el('td', { text: role }), el('td', { text: dtype }), el('td', { text: shape }),
    el('td', {}, badge(ok), ' ', detail)));
  row('manifest_sha256', 'header + manifest', '', '', true, el('span', { class: 'mono', text: f.header.manifestSha256.slice(0, 16) + '…' }));
  const payloadResult = results.find((r) => r.name === 'payload');
  if (f.payload.compression !== 'none') {
    const perr = payloadResult && payloadResult.error.code === 'E_PAYLOAD_DIGEST' ? payloadResult.error : null;
    row('payload.stored_sha256', 'zstd payload', '', '', !perr, perr ? el('span', { 'data-error': perr.code, 'data-offset': perr.offset, text: errorText(perr) }) : '');
  }
  if (payloadResult && payloadResult.error.code !== 'E_PAYLOAD_DIGEST') {
    const e = payloadResult.error;
    row('payload', 'payload structure', '', '', false, el('span', { 'data-error': e.code, 'data-offset': e.offset, text: errorText(e) }));
  }
  for (const [name, info] of f.tensors) {
    const r = results.find((x) => x.name === name);
    const shape = `[${info.shape.join(', ')}]`;
    if (!r) row(name, info.role, info.dtype, shape, false, 'not checked (the payload is damaged)');
    else if (r.ok) row(name, info.role, info.dtype, shape, true, '');
    else row(name, info.role, info.dtype, shape, false, el('span', { 'data-error': r.error.code, 'data-offset': r.error.offset, text: errorText(r.error) }));
  }
  t.append(body);
  return t;
}

function softmax(row) {
  const m = Math.max(...row);
  const e = row.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

async function montage(f, labelsOk) {
  const info = f.tensors.get('images');
  if (!info || info.shape.length !== 4) return el('p', { text: 'No images tensor of shape [M, C, H, W].' });
  const [M, C, H, W] = info.shape;
  const shown = Math.min(M, MONTAGE_MAX);
  // only the images drawn are read (their digests were checked just before)
  const images = await f.tensorRows('images', 0, shown);
  const labelInfo = f.tensors.get('labels');
  // soft labels only from a labels tensor whose digest matched
  const labels = labelsOk && labelInfo && labelInfo.shape.length === 2 && labelInfo.shape[0] === M ? await f.tensorRows('labels', 0, shown) : null;
  const K = labels ? labelInfo.shape[1] : 0;
  const names = (f.manifest.labels && f.manifest.labels.names) || Array.from({ length: K }, (_, k) => `class ${k}`);
  const pre = f.manifest.preprocessing;
  const transform = f.manifest.distill ? f.manifest.distill.label_transform : 'softmax';
  const list = el('ul', { class: 'montage', id: 'montage' });
  for (let i = 0; i < shown; i++) {
    const canvas = el('canvas', { width: W, height: H });
    const ctx = canvas.getContext('2d');
    const img = ctx.createImageData(W, H);
    const plane = H * W;
    const ch = (c) => images.subarray((i * C + c) * plane, (i * C + c + 1) * plane);
    const chans = C >= 3 ? [ch(0), ch(1), ch(2)] : [ch(0), ch(0), ch(0)];
    // back to [0, 1] with the file's preprocessing when it has one, else each image min-max scaled
    let lo = Infinity; let hi = -Infinity;
    if (!pre) for (const p of chans) for (const v of p) { if (v < lo) lo = v; if (v > hi) hi = v; }
    for (let k = 0; k < 3; k++) {
      const c = C >= 3 ? k : 0;
      const mean = pre ? Number(pre.mean[c] ?? pre.mean[0]) : 0;
      const std = pre ? Number(pre.std[c] ?? pre.std[0]) : 1;
      for (let p = 0; p < plane; p++) {
        const v = pre ? chans[k][p] * std + mean : (chans[k][p] - lo) / ((hi - lo) || 1);
        img.data[p * 4 + k] = Math.max(0, Math.min(255, Math.round(v * 255)));
      }
    }
    for (let p = 0; p < plane; p++) img.data[p * 4 + 3] = 255;
    ctx.putImageData(img, 0, 0);
    let probs = null;
    let caption = `Distilled image ${i + 1} of ${M}`;
    if (labels) {
      const row = Array.from(labels.subarray(i * K, (i + 1) * K), Number);
      probs = transform === 'softmax' ? softmax(row) : row;
      const top = probs.indexOf(Math.max(...probs));
      caption += `, soft label: ${names.map((n, k) => `${n} ${(probs[k] * 100).toFixed(1)}%`).join(', ')}; highest ${names[top]}`;
    }
    canvas.setAttribute('role', 'img');
    canvas.setAttribute('aria-label', caption);
    canvas.textContent = caption;
    const item = el('li', { 'data-image': String(i) }, canvas);
    if (probs) {
      const top = probs.indexOf(Math.max(...probs));
      const bars = el('div', { class: 'bars', 'aria-hidden': 'true' });
      probs.forEach((v, k) => bars.append(el('div', { class: `bar${k === top ? ' top' : ''}` },
        el('span', { text: names[k] }), el('span', {}, el('span', { class: 'fill', style: `width:${Math.max(0, Math.min(1, v)) * 100}%` })),
        el('span', { text: `${(v * 100).toFixed(0)}%${k === top ? ' ★' : ''}` }))));
      item.append(bars);
    }
    list.append(item);
    if (i % 8 === 7) await pause();
  }
  const note = M > shown ? el('p', { text: `Showing ${shown} of ${M} images.` }) : null;
  const what = labels ? `bars: the soft label after ${transform} (★ the highest class)`
    : labelInfo && !labelsOk ? 'soft labels not shown: the labels tensor did not verify' : 'no soft labels to show';
  return el('div', {}, el('p', { id: 'montage-note', text: `${M} distilled image(s), ${C} channel(s), ${H} × ${W} pixels; ${what}.` }), note, list);
}

async function lrPlot(f) {
  const info = f.tensors.get('lrs');
  if (!info) return el('p', { text: 'No learning rates (lrs) in this file.' });
  const lrs = Array.from(await f.tensor('lrs', { verify: false }), Number);
  const steps = f.manifest.distill ? Number(f.manifest.distill.steps) : lrs.length;
  const Wd = 640; const Hd = 220; const pad = 44;
  const lo = Math.min(0, ...lrs); const hi = Math.max(...lrs, lo + 1e-12);
  const x = (i) => pad + (lrs.length > 1 ? (i / (lrs.length - 1)) * (Wd - 2 * pad) : (Wd - 2 * pad) / 2);
  const y = (v) => Hd - pad + ((lo - v) / (hi - lo)) * (Hd - 2 * pad);
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${Wd} ${Hd}`);
  svg.setAttribute('width', '100%');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `Learned step sizes for ${lrs.length} steps, from ${Math.min(...lrs).toPrecision(3)} to ${Math.max(...lrs).toPrecision(3)}; the table below lists each value.`);
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.append(e);
  };
  add('line', { x1: pad, y1: Hd - pad, x2: Wd - pad, y2: Hd - pad, stroke: '#333' });
  add('line', { x1: pad, y1: pad, x2: pad, y2: Hd - pad, stroke: '#333' });
  add('text', { x: pad - 4, y: y(hi) + 4, 'text-anchor': 'end' }, hi.toPrecision(3));
  add('text', { x: pad - 4, y: y(lo) + 4, 'text-anchor': 'end' }, lo.toPrecision(3));
  add('text', { x: Wd / 2, y: Hd - 8, 'text-anchor': 'middle' }, `step (epoch boundaries dashed, ${steps} steps per epoch)`);
  for (let e = steps; e < lrs.length; e += steps) add('line', { x1: x(e - 0.5), y1: pad, x2: x(e - 0.5), y2: Hd - pad, stroke: '#999', 'stroke-dasharray': '4 3' });
  add('polyline', { points: lrs.map((v, i) => `${x(i)},${y(v)}`).join(' '), fill: 'none', stroke: '#000', 'stroke-width': 2 });
  lrs.forEach((v, i) => add('circle', { cx: x(i), cy: y(v), r: 3, fill: '#000' }));
  const table = el('table', { id: 'lrs-table' }, el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: 'Step' }), el('th', { scope: 'col', text: 'Learning rate' }))),
    el('tbody', {}, lrs.slice(0, 2000).map((v, i) => el('tr', {}, el('td', { text: i + 1 }), el('td', { text: String(v) })))));
  return el('div', {}, svg, el('details', {}, el('summary', { text: 'Values as a table' }), table));
}

function bytesTable(f, checkpointBytes) {
  // the lines of `sldp report` (sldpack/pipelines/report.py): stored bytes sum to the file size
  const lay = f.layoutBytes();
  const zstd = lay.compression !== 'none';
  const lines = [['header', lay.header, lay.header, ''], ['manifest', lay.manifest, lay.manifest, '']];
  for (const role of constants.ROLES) {
    const names = [...f.tensors].filter(([, t]) => t.role === role).map(([n]) => n);
    if (!names.length && (role === 'theta0_check' || role === 'extra')) continue;
    const n = names.reduce((s, k) => s + lay.tensorBytes[k], 0);
    lines.push([role, zstd ? 0 : n, n, `${names.length} tensor(s)`]);
  }
  if (zstd) lines.push(['compressed payload', lay.payloadStored, lay.payloadDecoded, `zstd, index ${lay.stHeader} B inside`]);
  else lines.push(['index', lay.stHeader, lay.stHeader, 'safetensors header']);
  const total = lines.reduce((s, l) => s + l[1], 0);
  const t = el('table', { id: 'bytes' }, el('thead', {}, el('tr', {}, ...['Part', 'Stored', 'Decoded', 'Share of file', 'Detail'].map((h) => el('th', { scope: 'col', text: h })))),
    el('tbody', {}, lines.map(([part, stored, decoded, detail]) => el('tr', { 'data-part': part },
      el('td', { text: part }), el('td', { 'data-bytes': stored, text: fmtBytes(stored) }), el('td', { text: fmtBytes(decoded) }),
      el('td', { text: `${((stored / f.fileSize) * 100).toFixed(1)}%` }), el('td', { text: detail })))));
  const rate = checkpointBytes ? f.fileSize / checkpointBytes : null;
  const rateText = rate === null
    ? 'Compression rate against the full checkpoint: the file does not carry the architecture\'s parameter count; `sldp report FILE` computes it (enter the checkpoint size to see the rate here, or open with ?checkpoint=BYTES).'
    : `Compression rate: ${(rate * 100).toPrecision(3)}% of the ${fmtBytes(checkpointBytes)} checkpoint (${(1 / rate).toFixed(1)}× smaller).`;
  const input = el('input', { id: 'checkpoint-bytes', type: 'number', min: '1', inputmode: 'numeric', value: checkpointBytes || '' });
  const out = el('div', {}, t, el('p', { id: 'bytes-total', text: `Total ${total} bytes = file size ${f.fileSize} bytes${total === f.fileSize ? '' : ' (MISMATCH)'}.` }),
    el('p', { id: 'rate', text: rateText }), el('label', { for: 'checkpoint-bytes' }, 'Full checkpoint size in bytes: '), input);
  input.addEventListener('change', () => {
    const v = Number(input.value);
    out.replaceWith(bytesTable(f, Number.isFinite(v) && v > 0 ? v : null));
  });
  return out;
}

async function fileSha256(blob) {
  const parts = [];
  for (let p = 0; p < blob.size; p += 1 << 23) {
    parts.push(new Uint8Array(await blob.slice(p, p + (1 << 23)).arrayBuffer()));
    setProgress('Hashing the file for its signature', Math.min(blob.size, p + (1 << 23)), blob.size);
  }
  return sha256Hex(parts);
}

async function signatureSection(blob, sig, key) {
  if (!sig && !key) return section('signature', 'Signature', el('p', { id: 'signature-status', text: 'Not checked: give a signature (.sig) and the signer\'s public key to check who made the file.' }));
  if (!sig || !key) return section('signature', 'Signature', el('p', { id: 'signature-status', text: `Not checked: the ${sig ? 'public key' : 'signature'} is missing.` }));
  try {
    const r = await verifySignature({ fileSha256: () => fileSha256(blob), signature: new Uint8Array(await sig.arrayBuffer()), publicKeys: [await key.text()] });
    return section('signature', 'Signature', el('p', { id: 'signature-status' }, badge(true, 'SIGNED'), ` by key id ${r.keyId}; the file's bytes are the ones that were signed.`));
  } catch (e) {
    const reason = e.reason || 'unusable key';
    return section('signature', 'Signature', el('p', { id: 'signature-status', 'data-reason': reason }, badge(false, 'NOT VERIFIED'), ` ${reason}: ${e.message}`));
  }
}

// --- the flow ------------------------------------------------------------------------------------

let running = null;

// Responsiveness: the longest gap between 20 ms timer ticks while a file loads (a frozen tab has long gaps).
const stall = { timer: null, last: 0, max: 0 };
function watchStalls() {
  clearInterval(stall.timer);
  stall.last = performance.now();
  stall.max = 0;
  stall.timer = setInterval(() => {
    const now = performance.now();
    stall.max = Math.max(stall.max, now - stall.last);
    stall.last = now;
  }, 20);
}

async function view(blob, name, sig = null, key = null, checkpointBytes = null) {
  const t0 = performance.now();
  watchStalls();
  document.body.dataset.state = 'loading';
  const out = $('results');
  out.replaceChildren();
  status(`Opening ${name}…`);
  let f;
  try {
    f = await openSldp(new BlobSource(blob, name), { pause, onProgress: ({ stage, done, total }) => setProgress(stage, done, total) });
  } catch (e) {
    if (!(e instanceof SldpFormatError)) throw e;
    renderInvalid(out, e, name, blob.size);
    return finish(t0, `${name}: INVALID, ${e.code} at byte ${e.offset}`);
  }
  const summary = section('summary', 'Result', el('p', { class: 'verdict', id: 'verdict-line' }, 'Checking digests…'),
    kvTable('File', [['file.name', 'File', name], ['file.size', 'Size', `${f.fileSize} bytes (${fmtBytes(f.fileSize)})`],
      ['header.version', 'SLDP version', `${f.header.versionMajor}.${f.header.versionMinor}`],
      ['header.manifest_sha256', 'Manifest SHA-256', f.header.manifestSha256], ['payload.compression', 'Payload compression', f.payload.compression]]));
  out.append(summary, section('manifest', 'Manifest', kvTable('Manifest', manifestRows(f))));
  status(`${name}: header and manifest valid; checking every digest…`);
  const results = await f.verifyEach();
  const bad = results.filter((r) => !r.ok);
  const verdictLine = $('verdict-line');
  verdictLine.replaceChildren(badge(!bad.length, bad.length ? 'INVALID' : 'VALID'), ' ', el('span', { id: 'verdict', text: bad.length ? 'INVALID' : 'VALID' }),
    bad.length ? el('span', {}, ': ', el('strong', { id: 'error-code', text: bad[0].error.code }), ' at byte offset ', el('strong', { id: 'error-offset', text: String(bad[0].error.offset) })) : ' — every digest matches');
  out.append(section('digests-section', 'Digests', digestTable(f, results)));
  const payloadOk = !results.some((r) => r.name === 'payload');
  const ok = (n) => results.some((r) => r.name === n && r.ok);
  if (payloadOk && ok('images')) out.append(section('images', 'Distilled images and soft labels', await montage(f, ok('labels'))));
  else out.append(section('images', 'Distilled images and soft labels', el('p', { text: 'Not shown: the images tensor is absent or did not verify.' })));
  if (payloadOk && ok('lrs')) out.append(section('lrs', 'Learned step sizes', await lrPlot(f)));
  out.append(section('bytes-section', 'Bytes per role and compression', bytesTable(f, checkpointBytes)));
  out.append(await signatureSection(blob, sig, key));
  await f.close();
  return finish(t0, `${name}: ${bad.length ? `INVALID, ${bad[0].error.code} at byte ${bad[0].error.offset}` : 'VALID'}`);
}

function finish(t0, text) {
  const ms = performance.now() - t0;
  clearInterval(stall.timer);
  stall.max = Math.max(stall.max, performance.now() - stall.last);
  document.body.dataset.loadMs = ms.toFixed(1);
  document.body.dataset.maxStallMs = stall.max.toFixed(1);
  $('progress-box').hidden = true;
  status(`${text} (${ms.toFixed(0)} ms)`);
  document.body.dataset.state = 'done';
}

function start(...args) {
  // one file at a time; an error that is not a format error is still shown, never left uncaught
  running = view(...args).catch((e) => {
    $('results').replaceChildren(section('summary', 'Result', el('div', { class: 'errorbox', role: 'alert', id: 'internal-error', text: `The viewer failed: ${e && e.message ? e.message : e}` })));
    document.body.dataset.state = 'done';
    status('The viewer failed (see the message above).');
  });
  return running;
}

async function fetchBlob(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`cannot fetch ${url}: HTTP ${res.status}`);
  const total = Number(res.headers.get('content-length')) || 0;
  if (total > FETCH_LIMIT) throw new Error(`${url} is ${total} bytes, above the format's limits`);
  if (!res.body) return res.blob();
  const reader = res.body.getReader();
  const parts = [];
  let done = 0;
  for (;;) {
    const r = await reader.read();
    if (r.done) break;
    parts.push(r.value);
    done += r.value.length;
    if (done > FETCH_LIMIT) throw new Error(`${url} is larger than the format's limits`);
    setProgress('Downloading', done, total || done);
  }
  return new Blob(parts);
}

function chosen() {
  return [$('sig-input').files[0] || null, $('key-input').files[0] || null];
}

function init() {
  const params = new URLSearchParams(location.search);
  const checkpoint = Number(params.get('checkpoint')) || null;
  const openChosen = () => {
    const file = $('file-input').files[0];
    if (file) start(file, file.name, ...chosen(), checkpoint);
  };
  // a signature or key chosen after the file checks the same file again
  for (const id of ['file-input', 'sig-input', 'key-input']) $(id).addEventListener('change', openChosen);
  const drop = $('drop');
  drop.addEventListener('keydown', (e) => {
    // keyboard users: Enter or Space on the drop zone opens the file picker
    if (e.target === drop && (e.key === 'Enter' || e.key === ' ')) {
      e.preventDefault();
      $('file-input').click();
    }
  });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const files = [...e.dataTransfer.files];
    const main = files.find((x) => !/\.(sig|pub|pem)$/i.test(x.name));
    const sig = files.find((x) => /\.sig$/i.test(x.name)) || chosen()[0];
    const key = files.find((x) => /\.(pub|pem)$/i.test(x.name)) || chosen()[1];
    if (main) start(main, main.name, sig, key, checkpoint);
  });
  const url = params.get('url');
  if (url) {
    document.body.dataset.state = 'loading';
    running = (async () => {
      const blob = await fetchBlob(url);
      const opt = async (p) => (params.get(p) ? fetchBlob(params.get(p)).catch(() => null) : null);
      const name = decodeURIComponent(url.split('/').pop() || url);
      await start(blob, name, await opt('sig'), await opt('key'), checkpoint);
    })().catch((e) => {
      $('results').replaceChildren(el('div', { class: 'errorbox', role: 'alert', id: 'internal-error', text: String(e.message || e) }));
      document.body.dataset.state = 'done';
    });
  }
}

init();
