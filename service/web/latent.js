// The latent space: the A / B picks, interpolation between them (Interpolate) and samples (Generate).
// Editing and directions live in edit.js.

import { call, encodedImageSrc, isAbort, thumbUrl } from './api.js';
import { $, announce, clearError, el, showError } from './ui.js';
import { clearGroup, onPicksChange, pickA, pickB, picks, removeFromGroup } from './picks.js';
import { searchById } from './search.js';
import { serverInfo } from './status.js';

export function frameSize(wanted) {
  const info = serverInfo();
  const cap = info && info.maxPreviewSize ? Number(info.maxPreviewSize) : wanted;
  return Math.min(wanted, cap);
}

/** A button showing a real photo (a frame's nearest match); activating it searches by the photo. */
export function nearestButton(match, size = 128, { showDistance = true } = {}) {
  const path = match.path || `image ${match.id}`;
  const button = el('button', { type: 'button', class: 'nearest', title: `Search by ${path}`, dataset: { id: String(match.id || '0') } },
    el('img', { alt: path, src: thumbUrl(match.id, size), width: size, height: size, loading: 'lazy', decoding: 'async' }),
    el('span', { class: 'nearest-path', text: path }),
    showDistance ? el('span', { class: 'nearest-dist', text: Number(match.distance || 0).toFixed(3) }) : null,
  );
  button.addEventListener('click', () => searchById(match.id, match.path || ''));
  return button;
}

/** One decoded frame: its image (data-testid="frame"), a caption, and the nearest real photo. */
export function frameCard(frame, caption, size) {
  const src = encodedImageSrc(frame.image);
  const image = frame.image || {};
  return el('li', { class: 'frame-card' },
    el('figure', {},
      el('img', {
        'data-testid': 'frame',
        class: 'frame-img',
        alt: `Decoded ${caption}`,
        src,
        width: Number(image.width || size),
        height: Number(image.height || size),
      }),
      el('figcaption', { class: 'small muted', text: caption }),
    ),
    frame.nearest && frame.nearest.length ? nearestButton(frame.nearest[0], 128) : null,
  );
}

export function initLatent() {
  onPicksChange(renderPicks);
  renderPicks(picks());

  for (const slot of ['a', 'b']) {
    $(`[data-pick-form="${slot}"]`).addEventListener('submit', async (event) => {
      event.preventDefault();
      const input = event.target.querySelector('input');
      const id = input.value.trim();
      if (!/^\d+$/.test(id)) {
        showError(new Error('An image id is a whole number, as on the cards (data-id) or from ListImages.'));
        return;
      }
      try {
        const match = await call('GetImage', { id });
        clearError();
        (slot === 'a' ? pickA : pickB)({ id, path: match.path || '' });
        input.value = '';
      } catch (err) {
        if (!isAbort(err)) showError(err);
      }
    });
    $(`[data-group-clear="${slot}"]`).addEventListener('click', () => clearGroup(slot));
    $(`[data-group-list="${slot}"]`).addEventListener('click', (event) => {
      const button = event.target.closest('[data-remove]');
      if (button) removeFromGroup(slot, button.dataset.remove);
    });
  }

  $('[data-interp-form]').addEventListener('submit', (event) => {
    event.preventDefault();
    interpolate();
  });
  $('[data-gen-form]').addEventListener('submit', (event) => {
    event.preventDefault();
    generate();
  });
}

function renderPicks(state, what) {
  for (const slot of ['a', 'b']) {
    const view = $(`[data-pick-view="${slot}"]`);
    const item = state[slot];
    if (!item) {
      view.replaceChildren(el('span', { class: 'muted', text: 'none' }));
    } else {
      view.replaceChildren(
        el('img', { src: thumbUrl(item.id, 128), alt: item.path || `image ${item.id}`, width: 64, height: 64 }),
        el('span', { class: 'pick-path' }, item.path || `image ${item.id}`, el('span', { class: 'muted small', text: ` (id ${item.id})` })),
      );
    }
    const group = slot === 'a' ? state.groupA : state.groupB;
    const list = $(`[data-group-list="${slot}"]`);
    list.replaceChildren(...(group.length
      ? group.map((g) => el('li', {},
        el('span', { class: 'group-path', text: g.path || `image ${g.id}` }),
        el('button', { type: 'button', class: 'linklike', 'data-remove': g.id, 'aria-label': `Remove ${g.path || g.id} from the group`, text: '×' })))
      : [el('li', { class: 'muted', text: 'no images yet' })]));
  }
  const badge = $('[data-picks-badge]');
  const letters = [state.a ? 'A' : '', state.b ? 'B' : ''].join('');
  badge.textContent = letters;
  badge.hidden = !letters;
  if (what === 'a' || what === 'b') {
    const item = state[what];
    const group = what === 'a' ? state.groupA : state.groupB;
    announce(`${what.toUpperCase()}: ${item.path || `image ${item.id}`} (${what.toUpperCase()} group: ${group.length})`);
  }
}

// --- interpolation ------------------------------------------------------------------------------------

let interpSeq = 0;

async function interpolate() {
  const { a, b } = picks();
  if (!a || !b) {
    showError(new Error('Pick two images first: A (start) and B (end), with the A / B buttons on the cards or by id.'));
    return;
  }
  const steps = Math.min(256, Math.max(2, Math.floor(Number($('#interp-steps').value) || 8)));
  const size = frameSize(96);
  const body = {
    start: { id: a.id },
    end: { id: b.id },
    steps,
    method: $('#interp-method').value,
    frames: { size, nearestK: 1 },
  };
  const strip = $('[data-testid="interpolate-strip"]');
  const button = $('[data-testid="interpolate-run"]');
  const seq = ++interpSeq;
  button.disabled = true;
  strip.setAttribute('aria-busy', 'true');
  try {
    const reply = await call('Interpolate', body);
    if (seq !== interpSeq) return;
    clearError();
    const fragment = document.createDocumentFragment();
    for (const frame of reply.frames || []) {
      fragment.append(frameCard(frame, `t = ${Number(frame.position || 0).toFixed(2)}`, size));
    }
    strip.replaceChildren(fragment);
    announce(`${(reply.frames || []).length} frames from A to B`);
  } catch (err) {
    if (!isAbort(err) && seq === interpSeq) showError(err);
  } finally {
    if (seq === interpSeq) {
      button.disabled = false;
      strip.removeAttribute('aria-busy');
    }
  }
}

// --- samples ------------------------------------------------------------------------------------------

let genSeq = 0;

async function generate() {
  const count = Math.min(64, Math.max(1, Math.floor(Number($('#gen-count').value) || 8)));
  const size = frameSize(96);
  const body = { count, source: $('#gen-source').value, frames: { size, nearestK: 1 } };
  const temperature = Number($('#gen-temperature').value);
  if (Number.isFinite(temperature) && temperature > 0 && temperature !== 1) body.temperature = temperature;
  const seed = $('#gen-seed').value.trim();
  if (seed) {
    if (!/^\d+$/.test(seed)) {
      showError(new Error('The seed is a whole number (or empty for a fresh draw).'));
      return;
    }
    body.seed = seed;
  }
  if ($('#gen-around').checked) {
    const { a } = picks();
    if (!a) {
      showError(new Error('Pick an image as A to sample around it.'));
      return;
    }
    body.around = { id: a.id };
  }
  const grid = $('[data-testid="generate-grid"]');
  const button = $('[data-testid="generate-run"]');
  const seq = ++genSeq;
  button.disabled = true;
  grid.setAttribute('aria-busy', 'true');
  try {
    const reply = await call('Generate', body);
    if (seq !== genSeq) return;
    clearError();
    const fragment = document.createDocumentFragment();
    (reply.frames || []).forEach((frame, i) => fragment.append(frameCard(frame, `sample ${i + 1}`, size)));
    grid.replaceChildren(fragment);
    announce(`${(reply.frames || []).length} samples`);
  } catch (err) {
    if (!isAbort(err) && seq === genSeq) showError(err);
  } finally {
    if (seq === genSeq) {
      button.disabled = false;
      grid.removeAttribute('aria-busy');
    }
  }
}
