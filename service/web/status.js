// The status bar: what the server runs (GetInfo), refreshed now and then, faster while an indexing run
// is under way.

import { call, isAbort } from './api.js';
import { $, el, fmtCount, fmtInstant, showError } from './ui.js';

const SLOW_MS = 30000;
const FAST_MS = 5000;

let info = null;
let timer = 0;
let failures = 0;
const listeners = new Set();

export function serverInfo() {
  return info;
}

export function onInfo(fn) {
  listeners.add(fn);
  if (info) fn(info);
}

export async function refreshStatus() {
  clearTimeout(timer);
  let next = SLOW_MS;
  try {
    info = await call('GetInfo', {});
    failures = 0;
    render(info);
    for (const fn of listeners) fn(info);
    if (info.lastRun && info.lastRun.status === 'running') next = FAST_MS;
  } catch (err) {
    if (isAbort(err)) return;
    failures += 1;
    $('[data-status-line]').textContent = `Server status unavailable: ${err.message}`;
    setNote('');
    if (failures === 1) showError(err);
    next = FAST_MS * Math.min(failures, 6);
  }
  timer = setTimeout(tick, next);
}

function tick() {
  if (document.hidden) {
    timer = setTimeout(tick, FAST_MS);
    return;
  }
  refreshStatus();
}

function setNote(content, kind = '') {
  const note = $('[data-status-note]');
  note.replaceChildren();
  if (!content) {
    note.hidden = true;
    return;
  }
  note.append(...(Array.isArray(content) ? content : [content]));
  note.className = `status-note ${kind}`.trim();
  note.hidden = false;
}

function item(label, value) {
  return el('span', { class: 'status-item' }, el('span', { class: 'status-label', text: `${label} ` }), el('b', { text: value }));
}

function runSummary(run) {
  const parts = [run.status || 'unknown'];
  const when = run.endedAt || run.startedAt;
  if (when) parts.push(fmtInstant(when));
  const counts = [];
  for (const key of ['new', 'changed', 'unchanged', 'moved', 'deleted', 'failed']) {
    const n = Number(run[key] || 0);
    if (n || key === 'new') counts.push(`${fmtCount(n)} ${key}`);
  }
  return `${parts.join(', ')} (${counts.join(', ')})`;
}

function render(data) {
  const line = $('[data-status-line]');
  const count = Number(data.imageCount || 0);
  const index = data.vectorKind && data.indexType && data.vectorKind !== data.indexType
    ? `${data.vectorKind} (${data.indexType})`
    : data.vectorKind || data.indexType || '—';
  const parts = [
    item('Model', data.modelId || '—'),
    item('Images', fmtCount(count)),
    item('Index', index),
    item('Metric', data.metric || '—'),
  ];
  if (data.lastRun) parts.push(item('Last indexing', runSummary(data.lastRun)));
  line.replaceChildren(...parts);

  if (!data.hasStore || count === 0) {
    setNote([
      'The store is empty — index a folder with ',
      el('code', { text: 'latentdex index' }),
      data.hasStore ? '.' : ' and serve it with --store.',
    ], 'warn');
  } else if (data.lastRun && data.lastRun.status === 'running') {
    setNote('The library is being indexed… results will grow as it goes.', 'info');
  } else {
    setNote('');
  }
}
