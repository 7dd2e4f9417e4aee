// Editing A along a named direction (Edit), live as the strength slider moves, and the directions
// themselves (ListDirections, CreateDirection, DeleteDirection).
//
// The slider's values are gathered for 60 ms before one is sent, and at most one Edit is in flight: the
// latest value that arrives meanwhile is sent when the answer is in, and an answer for another image or
// direction than the current one is dropped.

import { call, encodedImageSrc, isAbort } from './api.js';
import { $, announce, bindCardGrid, clearError, el, makeCard, showError } from './ui.js';
import { onPicksChange, picks } from './picks.js';
import { searchById } from './search.js';
import { frameSize } from './latent.js';

const DEBOUNCE_MS = 60;

const edit = { timer: 0, inFlight: false, pending: false, seq: 0 };
let directionsLoaded = false;
let directions = [];

export function initEdit() {
  const slider = $('[data-testid="edit-strength"]');
  const select = $('[data-testid="edit-direction"]');
  slider.addEventListener('input', () => {
    showStrength();
    scheduleEdit(DEBOUNCE_MS);
  });
  select.addEventListener('change', () => {
    $('[data-direction-delete]').disabled = !select.value;
    scheduleEdit(0);
  });
  onPicksChange((state, what) => {
    if (what === 'a') scheduleEdit(0);
  });
  bindCardGrid($('[data-testid="edit-nearest"]'), (match) => searchById(match.id, match.path));
  $('[data-direction-delete]').addEventListener('click', deleteDirection);
  $('[data-dir-form]').addEventListener('submit', (event) => {
    event.preventDefault();
    createDirection();
  });
  showStrength();
}

/** Called when the Latent view is shown. */
export function showLatent() {
  if (!directionsLoaded) loadDirections();
}

function strength() {
  return Number($('[data-testid="edit-strength"]').value) || 0;
}

function showStrength() {
  const value = strength();
  $('[data-edit-strength-value]').textContent = `${value > 0 ? '+' : ''}${value.toFixed(2)}`;
}

// --- the live edit ------------------------------------------------------------------------------------

function editKey() {
  const { a } = picks();
  const direction = $('[data-testid="edit-direction"]').value;
  return a && direction ? `${a.id}|${direction}` : '';
}

function scheduleEdit(delay) {
  if (!editKey()) return;
  // A timer already set stays: it reads the slider when it fires, so a drag sends a value every
  // DEBOUNCE_MS (or as fast as the server answers) instead of waiting for the hand to stop.
  if (edit.timer && delay > 0) return;
  clearTimeout(edit.timer);
  edit.timer = setTimeout(() => {
    edit.timer = 0;
    sendEdit();
  }, delay);
}

async function sendEdit() {
  if (edit.inFlight) {
    edit.pending = true;
    return;
  }
  const key = editKey();
  if (!key) return;
  const { a } = picks();
  const direction = $('[data-testid="edit-direction"]').value;
  const value = strength();
  const size = frameSize(128);
  const seq = ++edit.seq;
  edit.inFlight = true;
  edit.pending = false;
  $('[data-edit-caption]').classList.add('updating');
  try {
    const reply = await call('Edit', {
      source: { id: a.id },
      direction,
      strengths: [value],
      frames: { size, nearestK: 6 },
    });
    if (seq === edit.seq && key === editKey()) {
      clearError();
      renderEdit(reply, a, direction, value);
    }
  } catch (err) {
    if (!isAbort(err) && key === editKey() && !edit.pending) showError(err);
  } finally {
    edit.inFlight = false;
    $('[data-edit-caption]').classList.remove('updating');
    if (edit.pending) {
      edit.pending = false;
      sendEdit();
    }
  }
}

function renderEdit(reply, a, direction, value) {
  const frame = (reply.frames || [])[0];
  if (!frame) return;
  const img = $('[data-testid="edit-frame"]');
  const src = encodedImageSrc(frame.image);
  if (src) img.src = src;
  img.alt = `${a.path || `image ${a.id}`} edited along ${direction} at strength ${value}`;
  img.hidden = false;
  img.dataset.strength = String(value);
  const signed = `${value > 0 ? '+' : ''}${value.toFixed(2)}`;
  $('[data-edit-caption]').textContent = `${a.path || `image ${a.id}`}, ${direction} ${signed}`;
  const fragment = document.createDocumentFragment();
  (frame.nearest || []).forEach((match) => fragment.append(makeCard(match, { testid: 'nearest-card', size: 128, eager: true })));
  $('[data-testid="edit-nearest"]').replaceChildren(fragment);
}

// --- directions ---------------------------------------------------------------------------------------

export async function loadDirections(select = '') {
  const box = $('[data-testid="edit-direction"]');
  try {
    const reply = await call('ListDirections', {});
    directionsLoaded = true;
    directions = reply.directions || [];
  } catch (err) {
    if (!isAbort(err)) showError(err);
    return;
  }
  const previous = select || box.value;
  const note = $('[data-directions-note]');
  if (!directions.length) {
    box.replaceChildren(el('option', { value: '', text: '(no directions yet)' }));
    box.disabled = true;
    note.textContent = 'No directions yet: create one below from an A group and a B group.';
  } else {
    box.replaceChildren(...directions.map((d) => el('option', { value: d.name, text: directionLabel(d) })));
    box.disabled = false;
    box.value = directions.some((d) => d.name === previous) ? previous : directions[0].name;
    note.textContent = `${directions.length} direction${directions.length === 1 ? '' : 's'} for this model.`;
  }
  $('[data-direction-delete]').disabled = !box.value;
  scheduleEdit(0);
}

function directionLabel(d) {
  const sep = Number(d.separation || 0);
  return `${d.name} (${d.method || 'direction'}${sep ? `, AUC ${sep.toFixed(2)}` : ''})`;
}

function lines(text) {
  return text.split('\n').map((s) => s.trim()).filter(Boolean);
}

function group(items, globs) {
  const spec = {};
  if (items.length) spec.ids = items.map((g) => g.id);
  if (globs.length) spec.pathGlobs = globs;
  return spec;
}

async function createDirection() {
  const name = $('[data-testid="direction-name"]').value.trim();
  if (!name) {
    showError(new Error('Give the direction a name (letters, digits, _ . -).'));
    return;
  }
  const state = picks();
  const positive = group(state.groupA, lines($('#globs-a').value));
  const negative = group(state.groupB, lines($('#globs-b').value));
  if (!Object.keys(positive).length || !Object.keys(negative).length) {
    showError(new Error('Both groups need images: pick some with A and B on the cards, or give path patterns.'));
    return;
  }
  const body = { name, positive, negative, method: $('#direction-method').value };
  const description = $('#direction-description').value.trim();
  if (description) body.description = description;
  if ($('#direction-replace').checked) body.replace = true;

  const button = $('[data-testid="direction-create"]');
  const result = $('[data-dir-result]');
  button.disabled = true;
  try {
    const info = await call('CreateDirection', body);
    clearError();
    const sep = Number(info.separation || 0);
    const quality = sep
      ? `separation (held-out AUC) ${sep.toFixed(3)}`
      : 'separation not measured (groups too small to hold any out)';
    result.textContent = `Created “${info.name || name}”: ${quality}; ${Number(info.positiveCount || 0)} positive, `
      + `${Number(info.negativeCount || 0)} negative images; method ${info.method || '—'}; length ${Number(info.norm || 0).toFixed(2)}.`;
    result.hidden = false;
    announce(`Direction ${info.name || name} created`);
    await loadDirections(info.name || name);
  } catch (err) {
    if (!isAbort(err)) showError(err);
  } finally {
    button.disabled = false;
  }
}

async function deleteDirection() {
  const name = $('[data-testid="edit-direction"]').value;
  if (!name || !window.confirm(`Delete the direction “${name}”?`)) return;
  try {
    await call('DeleteDirection', { name });
    clearError();
    announce(`Direction ${name} deleted`);
    await loadDirections();
  } catch (err) {
    if (!isAbort(err)) showError(err);
  }
}
