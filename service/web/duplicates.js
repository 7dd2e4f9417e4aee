// Duplicates: the library's groups of copies (FindDuplicates), a page at a time. Each group is a row of
// cards, the suggested keeper first (most pixels, then the oldest capture time, then the shortest path),
// each other member with its distance to the keeper. Nothing here deletes or moves a file: the CLI's
// `latentdex duplicates STORE --emit-script review.sh` writes a script that moves the copies for review.

import { call, isAbort } from './api.js';
import {
  $, announce, bindCardGrid, clearError, el, fmtBytes, fmtCapture, fmtCount, fmtDistance, makeCard, showError,
} from './ui.js';
import { searchById } from './search.js';

// The first call on a big library computes every group before it answers (minutes at a million images);
// the pages after it come from the server's cache. 600 s is the gateway's longest deadline.
const LONG_DEADLINE_MS = 600000;
const DEFAULT_PAGE_SIZE = 20;
const MAX_PAGE_SIZE = 1000;
const EAGER_CARDS = 24;

const state = {
  seq: 0,
  controller: null,
  request: null, // {preset, pageSize} of the groups shown
  token: '', // the next page's token; '' on the last page
  shown: 0, // groups shown
  cards: 0, // cards shown
  startedAt: 0,
  timer: 0,
};

export function initDuplicates() {
  $('[data-dup-form]').addEventListener('submit', (event) => {
    event.preventDefault();
    run(false);
  });
  $('[data-testid="duplicates-more"]').addEventListener('click', () => run(true));
  bindCardGrid($('[data-testid="duplicates-groups"]'), (match) => searchById(match.id, match.path));
}

/** Called when the library changed (a new indexing run): the groups shown may be out of date. */
export function invalidateDuplicates() {
  if (!state.request) return;
  state.token = '';
  $('[data-testid="duplicates-more"]').hidden = true;
  $('[data-dup-stale]').hidden = false;
}

// --- the call -----------------------------------------------------------------------------------------

/** POST /v1/FindDuplicates, with a deadline long enough for the first answer on a big library. */
function findDuplicates(body, signal) {
  return call('FindDuplicates', body, { signal, deadlineMs: LONG_DEADLINE_MS });
}

function readRequest() {
  const preset = $('[data-testid="duplicates-preset"]').value || 'DUPLICATE_PRESET_NEAR';
  const field = $('[data-testid="duplicates-page-size"]');
  let pageSize = Math.floor(Number(field.value.trim() || DEFAULT_PAGE_SIZE));
  if (!Number.isFinite(pageSize) || pageSize < 1) pageSize = DEFAULT_PAGE_SIZE;
  pageSize = Math.min(pageSize, MAX_PAGE_SIZE);
  field.value = String(pageSize);
  return { preset, pageSize };
}

async function run(more) {
  if (more && !state.token) return;
  const seq = ++state.seq;
  if (state.controller) state.controller.abort();
  const controller = new AbortController();
  state.controller = controller;

  const groups = $('[data-testid="duplicates-groups"]');
  const moreButton = $('[data-testid="duplicates-more"]');
  const body = more ? { ...state.request, pageToken: state.token } : readRequest();
  if (!more) {
    // A new search: the old groups go at once, so that they are never taken for the new preset's.
    state.request = { ...body };
    state.token = '';
    state.shown = 0;
    state.cards = 0;
    groups.replaceChildren();
    $('[data-testid="duplicates-summary"]').textContent = '';
    $('[data-dup-threshold]').textContent = '';
    $('[data-dup-stale]').hidden = true;
  }
  moreButton.hidden = true;
  setBusy(true, more);
  clearError();
  try {
    const reply = await findDuplicates(body, controller.signal);
    if (seq !== state.seq) return;
    render(reply, more);
  } catch (err) {
    if (isAbort(err) || seq !== state.seq) return;
    moreButton.hidden = !state.token;
    if (!more) $('[data-testid="duplicates-summary"]').textContent = 'No groups: the search failed.';
    showError(err);
    announce('Finding duplicates failed.');
  } finally {
    if (seq === state.seq) {
      setBusy(false);
      state.controller = null;
    }
  }
}

function setBusy(busy, more = false) {
  const line = $('[data-dup-busy]');
  const groups = $('[data-testid="duplicates-groups"]');
  clearInterval(state.timer);
  if (!busy) {
    line.hidden = true;
    groups.removeAttribute('aria-busy');
    return;
  }
  const words = more ? 'Loading more groups…' : 'Looking for duplicates…';
  line.textContent = words;
  line.hidden = false;
  groups.setAttribute('aria-busy', 'true');
  announce(words);
  if (!more) {
    // The first answer for a large library takes a while: the seconds waited show that it is under way.
    state.startedAt = Date.now();
    state.timer = setInterval(() => {
      const seconds = Math.round((Date.now() - state.startedAt) / 1000);
      line.textContent = `${words} ${seconds} s (files compared once are kept for the next look; the pages after the first come at once)`;
    }, 1000);
  }
}

// --- the groups ---------------------------------------------------------------------------------------

function plural(n, one, many) {
  return `${fmtCount(n)} ${Number(n) === 1 ? one : many}`;
}

function summaryText(reply) {
  const total = Number(reply.totalGroups || 0);
  const images = Number(reply.imagesInGroups || 0);
  const scanned = Number(reply.imagesScanned || 0);
  if (!total) return `No duplicates among ${plural(scanned, 'image', 'images')} scanned.`;
  const copies = Math.max(0, images - total);
  return `${plural(total, 'group', 'groups')}, ${plural(images, 'image', 'images')}, `
    + `${plural(copies, 'copy beside its keeper', 'copies beside their keepers')}, `
    + `of ${plural(scanned, 'image', 'images')} scanned`;
}

function render(reply, more) {
  const list = $('[data-testid="duplicates-groups"]');
  const replyGroups = reply.groups || [];
  const fragment = document.createDocumentFragment();
  const firstNumber = state.shown + 1;
  replyGroups.forEach((group, i) => fragment.append(groupItem(group, firstNumber + i)));
  list.append(fragment);
  state.shown += replyGroups.length;
  state.token = reply.nextPageToken || '';

  const summary = $('[data-testid="duplicates-summary"]');
  summary.textContent = summaryText(reply);
  $('[data-dup-threshold]').textContent = `${presetName(state.request.preset)}${ruleText(reply)}`;

  const total = Number(reply.totalGroups || 0);
  const moreButton = $('[data-testid="duplicates-more"]');
  moreButton.hidden = !state.token;
  moreButton.textContent = state.token ? `More groups (${fmtCount(state.shown)} of ${fmtCount(total)} shown)` : 'More groups';

  if (more && replyGroups.length) {
    // Keyboard and screen reader users go on from the first group added, not from the top.
    const heading = $(`#dup-group-${firstNumber}`);
    if (heading) heading.focus();
    announce(`Groups ${firstNumber} to ${state.shown} of ${fmtCount(total)} shown.`);
  } else {
    announce(summary.textContent);
  }
}

/** A distance with the digits that tell copies apart: "0", "0.00042", "0.011", "0.125". */
function fmtSmall(value) {
  const d = Number(value || 0);
  if (!Number.isFinite(d) || d <= 0) return '0';
  if (d >= 0.01) return fmtDistance(d);
  return d.toFixed(Math.min(8, 1 - Math.floor(Math.log10(d))));
}

function presetName(preset) {
  const option = $(`[data-testid="duplicates-preset"] option[value="${preset}"]`);
  return option ? option.textContent : preset;
}

function groupItem(group, number) {
  const members = group.members || [];
  const keeper = members[0] || {};
  const headingId = `dup-group-${number}`;
  const heading = el('h3', { id: headingId, tabindex: '-1', text: `Group ${number} · ${plural(members.length, 'image', 'images')}` });
  const head = el('div', { class: 'dup-group-head' },
    heading,
    group.exact ? el('span', { class: 'dup-badge', 'data-testid': 'duplicates-exact', text: 'exact copies' }) : null,
  );
  const cards = el('ul', { class: 'grid dup-cards', 'aria-labelledby': headingId });
  members.forEach((match, i) => cards.append(memberCard(match, i === 0, keeper)));
  return el('li', {
    class: 'dup-group',
    dataset: { testid: 'duplicate-group', keeper: String(keeper.id || '0'), exact: group.exact ? 'true' : 'false' },
  }, head, cards);
}

/** "320×240 · JPEG · 41 kB · 2023-06-01 12:34": what the user judges copies by. */
function judgeLine(metadata = {}) {
  const parts = [];
  if (metadata.width || metadata.height) parts.push(`${metadata.width || 0}×${metadata.height || 0}`);
  if (metadata.format) parts.push(metadata.format);
  if (metadata.sizeBytes) parts.push(fmtBytes(metadata.sizeBytes));
  if (metadata.captureTime) parts.push(fmtCapture(metadata.captureTime));
  return parts.join(' · ');
}

function memberCard(match, isKeeper, keeper) {
  const eager = state.cards < EAGER_CARDS;
  state.cards += 1;
  const card = makeCard(match, { testid: 'duplicate-card', distance: true, picks: false, eager });
  card.classList.add(isKeeper ? 'dup-keeper' : 'dup-copy');
  card.dataset.role = isKeeper ? 'keeper' : 'copy';

  const path = match.path || `image ${match.id || 0}`;
  const metadata = match.metadata || {};
  const details = judgeLine(metadata);
  const keeperHash = keeper.metadata && keeper.metadata.contentHash;
  const sameFile = !isKeeper && Boolean(keeperHash) && metadata.contentHash === keeperHash;
  const distance = fmtSmall(match.distance);

  const open = card.querySelector('.card-open');
  const dist = card.querySelector('.card-dist');
  if (isKeeper) {
    dist.replaceWith(el('span', { class: 'dup-keep', 'data-testid': 'duplicates-keep', text: 'Keep' }));
  } else {
    dist.textContent = `${distance} from keeper${sameFile ? ' · same file' : ''}`;
  }
  let meta = card.querySelector('.card-meta');
  if (!meta && details) {
    meta = el('span', { class: 'card-meta' });
    open.append(meta);
  }
  if (meta) meta.textContent = details;

  const label = isKeeper
    ? `Keep: ${path}, the suggested keeper`
    : `${path}, distance ${distance} from the keeper${sameFile ? ', the same file' : ''}`;
  open.setAttribute('aria-label', `${label}${details ? `, ${details}` : ''}. Search by this image`);
  return card;
}

// The rule the groups were found by: the threshold alone, or with perceptual hashes the two-signal rule
// (the threshold then links only images without a hash), and the region check where files were read.
function ruleText(reply) {
  if (reply.threshold === undefined) return '';
  const rule = reply.hashRule;
  const regions = reply.regionRule
    ? ', or one picture inside the other in their files (crops, captions, borders)'
    : '';
  if (!rule) return `: distance at most ${fmtSmall(reply.threshold)}${regions}`;
  return `: distance at most ${fmtSmall(rule.threshold || 0)}, or pHash within ${rule.maxBits || 0} bits `
    + `and distance at most ${fmtSmall(rule.maxDistance || 0)}${regions}`;
}
