// Browse: the library a page at a time (ListImages) and its 2-D map (RenderMap), both leading to a
// search by the image chosen.

import { call, encodedImageSrc, isAbort } from './api.js';
import { $, announce, bindCardGrid, clearError, fmtCount, makeCard, showError } from './ui.js';
import { searchById } from './search.js';

const PAGE_SIZE = 48;
const MAP = { columns: 16, rows: 12, cell: 64 };

const list = { tokens: [''], page: 0, total: 0, loaded: false, seq: 0 };
const map = {
  loaded: false,
  seq: 0,
  zoom: 1,
  width: 0, // atlas pixels
  height: 0,
  columns: MAP.columns,
  rows: MAP.rows,
  cells: new Map(), // "column,row" -> MapCell
  cursor: null, // {column, row}
};

export function initBrowse() {
  const grid = $('[data-testid="browse-grid"]');
  bindCardGrid(grid, (match) => searchById(match.id, match.path));
  $('[data-page-prev]').addEventListener('click', () => loadPage(list.page - 1));
  $('[data-page-next]').addEventListener('click', () => loadPage(list.page + 1));

  $('[data-map-zoom-in]').addEventListener('click', () => zoomBy(1.25));
  $('[data-map-zoom-out]').addEventListener('click', () => zoomBy(1 / 1.25));
  $('[data-map-fit]').addEventListener('click', () => setZoom(fitZoom()));
  $('[data-map-reload]').addEventListener('click', () => loadMap());
  $('[data-map-decoded]').addEventListener('change', () => loadMap());

  const frame = $('[data-map-frame]');
  const img = $('[data-map-atlas]');
  img.addEventListener('load', () => {
    // The reply may leave the atlas size out: the decoded image has the final word.
    if (img.naturalWidth && (img.naturalWidth !== map.width || img.naturalHeight !== map.height)) {
      map.width = img.naturalWidth;
      map.height = img.naturalHeight;
      setZoom(fitZoom());
    }
  });
  frame.addEventListener('wheel', (event) => {
    if (!map.width) return;
    event.preventDefault();
    zoomBy(event.deltaY < 0 ? 1.15 : 1 / 1.15, event);
  }, { passive: false });
  img.addEventListener('click', (event) => {
    const cell = cellAt(event);
    if (!cell) return;
    setCursor(cell.column, cell.row);
    openCell();
  });
  img.addEventListener('mousemove', (event) => {
    const cell = cellAt(event);
    if (cell) setCursor(cell.column, cell.row, false);
  });
  frame.addEventListener('keydown', onMapKey);
  frame.addEventListener('focus', () => {
    if (map.width && !map.cursor) setCursor(0, 0);
  });
}

/** Called when the Browse view is shown: loads what has not been loaded yet. */
export function showBrowse() {
  if (!list.loaded) loadPage(0);
  if (!map.loaded) loadMap();
}

/** Called when the library changed (a new indexing run): the next visit reloads. */
export function invalidateBrowse() {
  list.loaded = false;
  list.tokens = [''];
  map.loaded = false;
}

// --- the paged list -----------------------------------------------------------------------------------

async function loadPage(page) {
  if (page < 0 || page >= list.tokens.length) return;
  const seq = ++list.seq;
  const grid = $('[data-testid="browse-grid"]');
  grid.setAttribute('aria-busy', 'true');
  const body = { pageSize: PAGE_SIZE };
  if (list.tokens[page]) body.pageToken = list.tokens[page];
  try {
    const reply = await call('ListImages', body);
    if (seq !== list.seq) return;
    clearError();
    list.loaded = true;
    list.page = page;
    list.total = Number(reply.totalCount || 0);
    list.tokens.length = page + 1;
    if (reply.nextPageToken) list.tokens.push(reply.nextPageToken);
    const images = reply.images || [];
    const fragment = document.createDocumentFragment();
    images.forEach((match, i) => fragment.append(makeCard(match, { testid: 'browse-card', distance: false, eager: i < 24 })));
    grid.replaceChildren(fragment);
    const pages = Math.max(1, Math.ceil(list.total / PAGE_SIZE));
    $('[data-page-info]').textContent = images.length
      ? `Page ${page + 1} of ${fmtCount(pages)} · ${fmtCount(list.total)} images`
      : 'The library is empty.';
    $('[data-page-prev]').disabled = page === 0;
    $('[data-page-next]').disabled = !reply.nextPageToken;
    if (page > 0 || images.length) announce(`Library page ${page + 1}: ${images.length} images`);
  } catch (err) {
    if (isAbort(err) || seq !== list.seq) return;
    showError(err);
  } finally {
    if (seq === list.seq) grid.removeAttribute('aria-busy');
  }
}

// --- the map ------------------------------------------------------------------------------------------

async function loadMap() {
  const seq = ++map.seq;
  const caption = $('[data-map-caption]');
  caption.textContent = 'Drawing the map…';
  const body = { ...MAP };
  if ($('[data-map-decoded]').checked) body.decoded = true;
  try {
    const reply = await call('RenderMap', body);
    if (seq !== map.seq) return;
    map.loaded = true;
    const atlas = reply.atlas || {};
    const src = encodedImageSrc(atlas);
    const img = $('[data-map-atlas]');
    map.cells = new Map();
    for (const cell of reply.cells || []) {
      map.cells.set(`${Number(cell.column || 0)},${Number(cell.row || 0)}`, cell);
    }
    map.cursor = null;
    $('[data-map-cursor]').hidden = true;
    if (!src) {
      img.hidden = true;
      map.width = 0;
      caption.textContent = 'No map: the library is empty.';
      return;
    }
    map.width = Number(atlas.width || 0) || MAP.columns * MAP.cell;
    map.height = Number(atlas.height || 0) || MAP.rows * MAP.cell;
    img.width = map.width;
    img.height = map.height;
    img.src = src;
    img.hidden = false;
    setZoom(fitZoom());
    const ex = Number(reply.explainedX || 0) * 100;
    const ey = Number(reply.explainedY || 0) * 100;
    caption.textContent = `${fmtCount(map.cells.size)} photos placed; the axes carry ${ex.toFixed(0)}% and ${ey.toFixed(0)}% of the latents' variance.`;
  } catch (err) {
    if (isAbort(err) || seq !== map.seq) return;
    if (err.code === 'FAILED_PRECONDITION') {
      // An empty store (or none): nothing to map, which the status bar already says.
      $('[data-map-atlas]').hidden = true;
      map.width = 0;
      caption.textContent = `No map: ${err.message}`;
    } else {
      caption.textContent = '';
      showError(err);
    }
  }
}

function fitZoom() {
  const frame = $('[data-map-frame]');
  const available = frame.clientWidth - 2;
  if (!map.width || available <= 0) return 1;
  return Math.min(1, available / map.width);
}

function setZoom(zoom, anchor) {
  if (!map.width) return;
  const frame = $('[data-map-frame]');
  const inner = $('[data-map-inner]');
  const next = Math.min(8, Math.max(0.1, zoom));
  // Keep the point under the pointer (or the frame's centre) where it is.
  const rect = frame.getBoundingClientRect();
  const ox = anchor ? anchor.clientX - rect.left : frame.clientWidth / 2;
  const oy = anchor ? anchor.clientY - rect.top : frame.clientHeight / 2;
  const fx = (frame.scrollLeft + ox) / (map.width * map.zoom);
  const fy = (frame.scrollTop + oy) / (map.height * map.zoom);
  map.zoom = next;
  inner.style.width = `${Math.round(map.width * next)}px`;
  inner.style.height = `${Math.round(map.height * next)}px`;
  frame.scrollLeft = fx * map.width * next - ox;
  frame.scrollTop = fy * map.height * next - oy;
  frame.dataset.zoom = next.toFixed(2);
}

function zoomBy(factor, anchor) {
  setZoom(map.zoom * factor, anchor);
}

function cellSide() {
  return { w: map.width / map.columns, h: map.height / map.rows };
}

function cellAt(event) {
  if (!map.width) return null;
  const rect = event.currentTarget.getBoundingClientRect();
  const x = ((event.clientX - rect.left) / rect.width) * map.width;
  const y = ((event.clientY - rect.top) / rect.height) * map.height;
  const side = cellSide();
  const column = Math.min(map.columns - 1, Math.max(0, Math.floor(x / side.w)));
  const row = Math.min(map.rows - 1, Math.max(0, Math.floor(y / side.h)));
  return { column, row };
}

function setCursor(column, row, scroll = true) {
  map.cursor = { column, row };
  const cursor = $('[data-map-cursor]');
  cursor.style.left = `${(column / map.columns) * 100}%`;
  cursor.style.top = `${(row / map.rows) * 100}%`;
  cursor.style.width = `${100 / map.columns}%`;
  cursor.style.height = `${100 / map.rows}%`;
  cursor.hidden = false;
  if (scroll) cursor.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  const cell = map.cells.get(`${column},${row}`);
  $('[data-map-caption]').textContent = cell
    ? `${cell.path || `image ${cell.id}`} (column ${column + 1}, row ${row + 1})`
    : `No photo at column ${column + 1}, row ${row + 1}`;
}

function openCell() {
  if (!map.cursor) return;
  const cell = map.cells.get(`${map.cursor.column},${map.cursor.row}`);
  if (!cell) {
    announce('No photo there.');
    return;
  }
  searchById(cell.id, cell.path || '');
}

function onMapKey(event) {
  if (!map.width) return;
  const moves = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };
  if (event.key === '+' || event.key === '=') {
    event.preventDefault();
    zoomBy(1.25);
    return;
  }
  if (event.key === '-') {
    event.preventDefault();
    zoomBy(1 / 1.25);
    return;
  }
  if (event.key === 'Enter' || event.key === ' ') {
    event.preventDefault();
    openCell();
    return;
  }
  const move = moves[event.key];
  if (!move) return;
  event.preventDefault();
  const current = map.cursor || { column: 0, row: 0 };
  const column = Math.min(map.columns - 1, Math.max(0, current.column + move[0]));
  const row = Math.min(map.rows - 1, Math.max(0, current.row + move[1]));
  setCursor(column, row);
}
