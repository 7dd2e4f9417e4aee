// latentdex web app: wires the views, the hash routes (#search, #browse, #latent, #duplicates) and signing in.

import { setLoginHandler, startSession } from './api.js';
import { $, $$, clearError, currentRoute, showError } from './ui.js';
import { onInfo, refreshStatus } from './status.js';
import { initSearch } from './search.js';
import { initBrowse, invalidateBrowse, showBrowse } from './browse.js';
import { initLatent } from './latent.js';
import { initEdit, showLatent } from './edit.js';
import { initDuplicates, invalidateDuplicates } from './duplicates.js';

// The Duplicates view's route (ui.js lists the first three).

// --- routes -------------------------------------------------------------------------------------------

function route() {
  const name = currentRoute();
  for (const view of $$('[data-view]')) view.hidden = view.dataset.view !== name;
  for (const link of $$('[data-route]')) {
    if (link.dataset.route === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `latentdex · ${name[0].toUpperCase()}${name.slice(1)}`;
  if (name === 'browse') showBrowse();
  if (name === 'latent') showLatent();
}

// --- signing in ---------------------------------------------------------------------------------------

const login = { waiters: [] };

function askForToken(message) {
  const form = $('[data-token-form]');
  form.hidden = false;
  $('[data-token-message]').textContent = message && !/token/i.test(message) ? message : '';
  const input = $('[data-testid="token-input"]');
  if (document.activeElement !== input) input.focus();
  return new Promise((resolve) => login.waiters.push(resolve));
}

async function submitToken(event) {
  event.preventDefault();
  const input = $('[data-testid="token-input"]');
  const message = $('[data-token-message]');
  const token = input.value.trim();
  if (!token) {
    message.textContent = 'Enter the token the server was started with.';
    return;
  }
  const button = $('[data-testid="token-submit"]');
  button.disabled = true;
  try {
    if (!(await startSession(token))) {
      message.textContent = 'That token was not accepted.';
      input.select();
      return;
    }
    input.value = '';
    message.textContent = '';
    $('[data-token-form]').hidden = true;
    clearError();
    const waiters = login.waiters.splice(0);
    for (const resolve of waiters) resolve();
    reloadFailedImages();
  } catch (err) {
    showError(err);
  } finally {
    button.disabled = false;
  }
}

/** Images requested before the session cookie was set failed with 401: ask for them again. */
function reloadFailedImages() {
  for (const img of $$('img[src^="/v1/images/"]')) {
    if (img.complete && img.naturalWidth === 0) {
      const src = img.getAttribute('src');
      img.removeAttribute('src');
      img.setAttribute('src', src);
    }
  }
}

// --- start --------------------------------------------------------------------------------------------

function start() {
  setLoginHandler(askForToken);
  $('[data-token-form]').addEventListener('submit', submitToken);
  $('[data-error-dismiss]').addEventListener('click', clearError);

  initSearch();
  initBrowse();
  initLatent();
  initEdit();
  initDuplicates();

  // A newer store (the indexer saved again) makes the library views reload when next shown.
  let storeStamp = null;
  onInfo((info) => {
    const stamp = `${info.storeUpdatedAt || ''}|${info.imageCount || 0}`;
    if (storeStamp !== null && stamp !== storeStamp) {
      invalidateBrowse();
      invalidateDuplicates();
      if (currentRoute() === 'browse') showBrowse();
    }
    storeStamp = stamp;
  });

  window.addEventListener('hashchange', route);
  route();
  refreshStatus();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();

// Errors nobody caught still reach the page's error area (and never stop the rest of it).
window.addEventListener('unhandledrejection', (event) => {
  if (event.reason && event.reason.name === 'AbortError') return;
  showError(event.reason || new Error('Something went wrong.'));
});
