// The images picked on cards for the latent views: A (start of an interpolation, the image to edit) and B
// (its end); every pick also joins its group (A: positive, B: negative) for a new direction.
// Picks are {id, path} with the id as a string (int64 in JSON).

const state = { a: null, b: null, groupA: [], groupB: [] };
const listeners = new Set();

export function picks() {
  return state;
}

export function onPicksChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function changed(what) {
  for (const fn of listeners) fn(state, what);
}

function slim(match) {
  return { id: String(match.id || '0'), path: match.path || '' };
}

function pick(slot, match) {
  const item = slim(match);
  state[slot] = item;
  const group = slot === 'a' ? state.groupA : state.groupB;
  if (!group.some((g) => g.id === item.id)) group.push(item);
  changed(slot);
}

export function pickA(match) {
  pick('a', match);
}

export function pickB(match) {
  pick('b', match);
}

export function removeFromGroup(slot, id) {
  const key = slot === 'a' ? 'groupA' : 'groupB';
  state[key] = state[key].filter((g) => g.id !== id);
  changed(key);
}

export function clearGroup(slot) {
  state[slot === 'a' ? 'groupA' : 'groupB'] = [];
  changed(slot === 'a' ? 'groupA' : 'groupB');
}
