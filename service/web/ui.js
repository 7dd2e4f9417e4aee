// Shared page pieces: element building, the error area, the live region, routing, and the image cards
// used by search results, the library grid and the latent views.

import { thumbUrl, previewUrl } from './api.js';
import { pickA, pickB } from './picks.js';

/** el('div', {class: 'x', dataset: {id: '1'}}, child, 'text') */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key === 'text') node.textContent = value;
    else if (key in node && typeof value !== 'string') node[key] = value;
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child);
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

// --- errors and announcements -------------------------------------------------------------------------

export function showError(err) {
  const box = $('[data-testid="error"]');
  const text = err && err.message ? err.message : String(err);
  $('[data-error-text]', box).textContent = text;
  box.hidden = false;
  if (err && err.code) box.dataset.code = err.code;
  else delete box.dataset.code;
}

export function clearError() {
  const box = $('[data-testid="error"]');
  box.hidden = true;
  $('[data-error-text]', box).textContent = '';
  delete box.dataset.code;
}

let announceTimer = 0;
export function announce(message) {
  const region = $('[data-announce]');
  // Clear, then set on the next frame, so that the same words twice are announced twice.
  region.textContent = '';
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => {
    region.textContent = message;
  }, 30);
}

// --- routing ------------------------------------------------------------------------------------------

export const ROUTES = ['search', 'browse', 'latent', 'duplicates'];

export function currentRoute() {
  const name = location.hash.replace(/^#/, '');
  return ROUTES.includes(name) ? name : 'search';
}

export function navigate(route) {
  if (currentRoute() !== route || location.hash !== `#${route}`) location.hash = `#${route}`;
}

// --- formatting ---------------------------------------------------------------------------------------

export function fmtDistance(value) {
  return Number(value || 0).toFixed(3);
}

/** An EXIF capture time (written as UTC, really zone-less) as "2023-06-01 12:34". */
export function fmtCapture(timestamp) {
  if (!timestamp) return '';
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(timestamp);
  return m ? `${m[1]} ${m[2]}` : timestamp;
}

/** A real instant (indexing runs) in the viewer's time zone. */
export function fmtInstant(timestamp) {
  if (!timestamp) return '';
  const date = new Date(timestamp);
  return Number.isNaN(date.getTime()) ? timestamp : date.toLocaleString();
}

export function fmtCount(value) {
  const n = Number(value || 0);
  return Number.isFinite(n) ? n.toLocaleString() : String(value);
}

export function fmtBytes(value) {
  const n = Number(value || 0);
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MB`;
  if (n >= 1 << 10) return `${Math.round(n / (1 << 10))} kB`;
  return `${n} B`;
}

/** "4032×3024 · JPEG · 2023-06-01 12:34 · Canon EOS 80D" (the parts the metadata has). */
export function metaLine(metadata = {}) {
  const parts = [];
  if (metadata.width || metadata.height) parts.push(`${metadata.width || 0}×${metadata.height || 0}`);
  if (metadata.format) parts.push(metadata.format);
  if (metadata.captureTime) parts.push(fmtCapture(metadata.captureTime));
  const camera = [metadata.cameraMake, metadata.cameraModel].filter(Boolean).join(' ');
  if (camera) parts.push(camera);
  return parts.join(' · ');
}

// --- cards --------------------------------------------------------------------------------------------

const cardMatches = new WeakMap();

export function matchOfCard(card) {
  return cardMatches.get(card);
}

/**
 * A card for one Match: a button with the thumbnail, distance and path (activating it opens a search by
 * the image), and the small A / B pick buttons.
 */
export function makeCard(match, {
  testid = 'result-card',
  eager = false,
  size = 256,
  distance = true,
  picks = true,
  preview = false,
  previewSize = 128,
} = {}) {
  const id = String(match.id || '0');
  const path = match.path || `image ${id}`;
  const meta = metaLine(match.metadata);
  const tooltip = [path, meta, match.metadata && match.metadata.sizeBytes ? fmtBytes(match.metadata.sizeBytes) : '']
    .filter(Boolean).join('\n');

  const img = el('img', {
    class: 'card-img',
    alt: path,
    width: 256,
    height: 256,
    decoding: 'async',
    loading: eager ? 'eager' : 'lazy',
    dataset: { id },
  });
  img.src = preview ? previewUrl(id, previewSize) : thumbUrl(id, size);

  const open = el('button', { type: 'button', class: 'card-open', title: tooltip },
    img,
    distance ? el('span', { class: 'card-dist', text: fmtDistance(match.distance) }) : null,
    el('span', { class: 'card-path', text: path }),
    meta ? el('span', { class: 'card-meta', text: meta }) : null,
  );

  const card = el('li', { class: 'card', tabindex: '-1', dataset: { testid, id, path, card: '' } }, open);
  if (picks) {
    card.append(el('div', { class: 'card-picks' },
      el('button', { type: 'button', class: 'pick', 'data-testid': 'pick-a', 'data-pick': 'a', 'aria-label': `Pick ${path} as A`, title: 'Pick as A (start / positive group)', text: 'A' }),
      el('button', { type: 'button', class: 'pick', 'data-testid': 'pick-b', 'data-pick': 'b', 'aria-label': `Pick ${path} as B`, title: 'Pick as B (end / negative group)', text: 'B' }),
    ));
  }
  cardMatches.set(card, match);
  return card;
}

/** Wires a grid of cards: activating a card calls onOpen(match); A / B buttons pick the card's image. */
export function bindCardGrid(grid, onOpen) {
  grid.addEventListener('click', (event) => {
    const card = event.target.closest('[data-card]');
    if (!card || !grid.contains(card)) return;
    const match = matchOfCard(card);
    const pick = event.target.closest('[data-pick]');
    if (pick) {
      (pick.dataset.pick === 'a' ? pickA : pickB)(match);
      return;
    }
    onOpen(match, event);
  });
  grid.addEventListener('keydown', (event) => {
    // The card itself (focused by a script or a test) opens on Enter; its buttons handle their own keys.
    if (event.key !== 'Enter' || !event.target.matches('[data-card]')) return;
    event.preventDefault();
    onOpen(matchOfCard(event.target), event);
  });
}
