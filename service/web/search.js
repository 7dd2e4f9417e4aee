// Search: by a dropped, picked or pasted photo (QueryByImage, the file as the body) or by a stored image
// (QueryById), with k and the filter from the form. One request per search; the grid is built in one
// DocumentFragment and the time from the drop to the painted grid is measured:
//   performance.measure('search', 'search-start', 'results-painted'),
//   window.latentdex.lastSearchMs, and lastServerMs (QueryTimings.totalUs / 1000).

import { call, queryByImage, isAbort, thumbUrl, previewUrl } from './api.js';
import { $, $$, announce, bindCardGrid, clearError, makeCard, navigate, showError, fmtCount } from './ui.js';
import { onInfo, serverInfo } from './status.js';

const EAGER = 24;

const metrics = (window.latentdex = window.latentdex || {});
Object.assign(metrics, { lastSearchMs: null, lastServerMs: null, lastResultCount: null, searchCount: 0 });

const state = {
  query: null, // {kind: 'file', file, url} | {kind: 'id', id, path}
  seq: 0,
  controller: null,
  previews: false,
};

let grid;
let form;

export function initSearch() {
  grid = $('[data-testid="results"]');
  form = $('[data-filters]');
  const zone = $('[data-testid="drop-zone"]');
  const input = $('[data-testid="file-input"]');

  input.addEventListener('change', () => {
    const file = input.files && input.files[0];
    if (file) searchByFile(file);
    input.value = ''; // picking the same file again searches again
  });

  // Drag and drop onto the zone; a drop that misses it must not make the browser open the file.
  let depth = 0;
  zone.addEventListener('dragenter', (event) => {
    event.preventDefault();
    depth += 1;
    zone.classList.add('dragging');
  });
  zone.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth) zone.classList.remove('dragging');
  });
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    if (event.dataTransfer) event.dataTransfer.dropEffect = 'copy';
  });
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    depth = 0;
    zone.classList.remove('dragging');
    handleDrop(event.dataTransfer);
  });
  for (const type of ['dragover', 'drop']) {
    window.addEventListener(type, (event) => {
      if (!zone.contains(event.target)) event.preventDefault();
    });
  }

  // Paste an image anywhere while the search page is shown (not into a text field).
  document.addEventListener('paste', (event) => {
    if ($('[data-view="search"]').hidden) return;
    const file = imageFromClipboard(event.clipboardData);
    if (!file) return;
    event.preventDefault();
    searchByFile(file);
  });

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!state.query) {
      announce('Filters set: drop, choose or paste a photo to search.');
      return;
    }
    performance.mark('search-start');
    run();
  });
  $('[data-clear-filters]').addEventListener('click', () => {
    for (const field of $$('input[type="text"], input[type="date"], #filter-min-width, #filter-min-height', form)) field.value = '';
    for (const box of $$('input[name="format"]', form)) box.checked = false;
  });

  $('[data-toggle-previews]').addEventListener('change', (event) => {
    state.previews = event.target.checked;
    swapPreviews();
  });

  bindCardGrid(grid, (match) => searchById(match.id, match.path));

  onInfo((info) => {
    const k = $('[data-testid="k-input"]');
    if (info.maxK) k.max = String(info.maxK);
  });
}

function imageFromClipboard(data) {
  if (!data) return null;
  for (const item of data.items || []) {
    if (item.kind === 'file' && item.type.startsWith('image/')) return item.getAsFile();
  }
  for (const file of data.files || []) {
    if (file.type.startsWith('image/')) return file;
  }
  return null;
}

function handleDrop(transfer) {
  if (!transfer) return;
  const file = transfer.files && transfer.files[0];
  if (file) {
    searchByFile(file);
    return;
  }
  // A thumbnail dragged from this page: search by its image id.
  const uri = transfer.getData('text/uri-list') || transfer.getData('text/plain') || '';
  const m = /\/v1\/images\/(\d+)\//.exec(uri);
  if (m) {
    const img = document.querySelector(`img[data-id="${m[1]}"]`);
    searchById(m[1], img ? img.alt : '');
  } else {
    showError(new Error('Drop an image file (or a thumbnail from this page).'));
  }
}

// --- the search ---------------------------------------------------------------------------------------

export function searchByFile(file) {
  performance.mark('search-start');
  if (state.query && state.query.kind === 'file') URL.revokeObjectURL(state.query.url);
  state.query = { kind: 'file', file, url: URL.createObjectURL(file) };
  navigate('search');
  run();
}

export function searchById(id, path = '') {
  performance.mark('search-start');
  if (state.query && state.query.kind === 'file') URL.revokeObjectURL(state.query.url);
  state.query = { kind: 'id', id: String(id), path };
  navigate('search');
  run();
}

function intField(selector) {
  const raw = $(selector, form).value.trim();
  if (!raw) return 0;
  const n = Math.floor(Number(raw));
  return Number.isFinite(n) && n > 0 ? n : 0;
}

/** QueryOptions from the form: {k, filter} with only the set fields. */
export function readOptions() {
  const filter = {};
  const prefix = $('[data-testid="filter-path-prefix"]', form).value.trim();
  if (prefix) filter.pathPrefix = prefix;
  const after = $('#filter-after', form).value;
  if (after) filter.capturedAfter = `${after}T00:00:00Z`;
  const before = $('#filter-before', form).value;
  if (before) filter.capturedBefore = `${before}T00:00:00Z`;
  const minWidth = intField('#filter-min-width');
  if (minWidth) filter.minWidth = minWidth;
  const minHeight = intField('#filter-min-height');
  if (minHeight) filter.minHeight = minHeight;
  const formats = $$('input[name="format"]:checked', form).map((box) => box.value);
  if (formats.length) filter.formats = formats;

  const rawK = $('[data-testid="k-input"]', form).value.trim();
  const k = rawK === '' ? 24 : Math.floor(Number(rawK));
  const options = { k: Number.isFinite(k) ? k : 24 };
  if (Object.keys(filter).length) options.filter = filter;
  return options;
}

async function run() {
  const query = state.query;
  const seq = ++state.seq;
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;
  const options = readOptions();
  clearError();
  renderQueryHeader(query);
  $('[data-search-busy]').hidden = false;
  grid.setAttribute('aria-busy', 'true');
  try {
    const reply = query.kind === 'file'
      ? await queryByImage(query.file, options, { signal: controller.signal })
      : await call('QueryById', { id: query.id, options }, { signal: controller.signal });
    if (seq !== state.seq) return;
    renderResults(reply);
  } catch (err) {
    if (isAbort(err) || seq !== state.seq) return;
    grid.replaceChildren();
    $('[data-search-empty]').hidden = true;
    showError(err);
    announce('The search failed.');
  } finally {
    if (seq === state.seq) {
      $('[data-search-busy]').hidden = true;
      grid.removeAttribute('aria-busy');
      state.controller = null;
    }
  }
}

function renderQueryHeader(query) {
  const box = $('[data-query]');
  const img = $('[data-query-img]', box);
  const title = $('[data-query-title]', box);
  const meta = $('[data-query-meta]', box);
  box.hidden = false;
  if (query.kind === 'file') {
    img.src = query.url;
    img.alt = `Query image ${query.file.name || '(pasted)'}`;
    title.textContent = `Similar to ${query.file.name || 'the pasted image'}`;
    meta.textContent = query.file.size ? `${query.file.type || 'file'}, ${Math.max(1, Math.round(query.file.size / 1024))} kB` : '';
  } else {
    img.src = thumbUrl(query.id, 256);
    img.alt = query.path || `image ${query.id}`;
    title.textContent = `Similar to ${query.path || `image ${query.id}`}`;
    meta.textContent = `id ${query.id}`;
  }
}

function previewSize() {
  const info = serverInfo();
  const cap = info && info.maxPreviewSize ? Number(info.maxPreviewSize) : 128;
  return Math.min(128, cap);
}

function renderResults(reply) {
  const matches = reply.matches || [];
  const fragment = document.createDocumentFragment();
  const size = previewSize();
  matches.forEach((match, i) => {
    fragment.append(makeCard(match, { eager: i < EAGER, preview: state.previews, previewSize: size }));
  });
  grid.replaceChildren(fragment);
  $('[data-search-empty]').hidden = matches.length > 0;
  if (!matches.length) $('[data-search-empty]').textContent = 'No stored image passes these filters.';

  const q = state.query;
  if (q && q.kind === 'id' && matches.length) {
    $('[data-query-meta]').textContent = `id ${q.id}`;
  }
  const timings = reply.timings || {};
  const serverMs = timings.totalUs !== undefined ? Number(timings.totalUs) / 1000 : null;
  metrics.lastServerMs = serverMs;
  metrics.lastResultCount = matches.length;
  metrics.lastTimings = timings;

  requestAnimationFrame(() => {
    performance.mark('results-painted');
    try {
      const measure = performance.measure('search', 'search-start', 'results-painted');
      metrics.lastSearchMs = measure.duration;
    } catch {
      metrics.lastSearchMs = null;
    }
    metrics.searchCount += 1;
    document.dispatchEvent(new CustomEvent('latentdex:results', { detail: { count: matches.length } }));
  });
  const n = matches.length;
  announce(`${fmtCount(n)} result${n === 1 ? '' : 's'}${serverMs !== null ? ` in ${serverMs.toFixed(0)} ms` : ''}`);
}

function swapPreviews() {
  const size = previewSize();
  for (const img of $$('img.card-img', grid)) {
    const id = img.dataset.id;
    img.src = state.previews ? previewUrl(id, size) : thumbUrl(id, 256);
  }
  announce(state.previews ? 'Showing decoded previews' : 'Showing original thumbnails');
}
