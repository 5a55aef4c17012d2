// Service accounts: creating and deleting them, and issuing their tokens.

import { state } from './state.js';
import { $, show } from './dom.js';
import { dateTime, list, splitList } from './format.js';
import { api, isAuthError } from './api.js';
import { refresh, setStatus, signOut } from './session.js';
import { findAccount, principalKey } from './models.js';
import { renderPrincipals } from './principals.js';

export function showNotice(text, kind) {
  var n = $('sa-notice');
  n.textContent = text || '';
  n.className = 'small ' + (kind === 'error' ? 'form-error' : 'notice-ok');
  show(n, !!text);
}

export function openIssueForm(name) {
  var a = findAccount(name);
  var g = a ? list(a.groups) : [];
  state.issueFor = name;
  hideAccountToken();
  $('sa-issue-form').reset();
  $('sa-issue-name').textContent = name;
  $('sa-issue-groups').textContent = 'A service token with subject ' + name + (g.length ? ' and the account\'s groups: ' + g.join(', ') : ' and no groups') + '.';
  show($('sa-issue-error'), false);
  show($('sa-issue-form'), true);
  $('sa-issue-form').scrollIntoView({ block: 'nearest' });
  $('sa-ttl').focus();
}

export function closeIssueForm() {
  state.issueFor = null;
  $('sa-issue-form').reset();
  $('sa-issue-name').textContent = '';
  show($('sa-issue-error'), false);
  show($('sa-issue-form'), false);
}

export function hideAccountToken() {
  $('sa-new-token-value').value = '';
  $('sa-new-token-meta').textContent = '';
  $('sa-copy-result').textContent = '';
  show($('sa-new-token'), false);
}

export function issueAccountToken(ev) {
  ev.preventDefault();
  var name = state.issueFor;
  if (!name) return;
  var err = $('sa-issue-error');
  show(err, false);
  var fail = function (msg) {
    err.textContent = msg;
    show(err, true);
  };
  var amount = Number($('sa-ttl').value);
  var unit = Number($('sa-ttl-unit').value);
  if (!(amount > 0) || Math.floor(amount) !== amount) return fail('Lifetime must be a whole number above zero.');
  var body = { ttl_seconds: amount * unit, description: $('sa-token-description').value.trim() };
  var gen = state.gen;
  var button = $('sa-issue');
  button.disabled = true;
  api('POST', '/service-accounts/' + encodeURIComponent(name) + '/tokens', body).then(
    function (res) {
      button.disabled = false;
      if (gen !== state.gen) return;
      closeIssueForm();
      $('sa-new-token-value').value = res && typeof res.token === 'string' ? res.token : '';
      $('sa-new-token-meta').textContent = 'Token ' + (res && res.id ? res.id : '') + ' for service account ' + name +
        (res && typeof res.expires_at === 'number' ? ', expires ' + dateTime(res.expires_at) : '') + '.';
      show($('sa-new-token'), true);
      $('sa-new-token-value').focus();
      $('sa-new-token-value').select();
      state.expanded.add(principalKey('service', name));
      setStatus('Issued ' + (res && res.id ? res.id : 'a token') + ' for service account ' + name, 'ok');
      refresh();
    },
    function (e) {
      button.disabled = false;
      if (gen !== state.gen) return;
      if (isAuthError(e)) return signOut(e.message);
      fail(e.message);
    }
  );
}

export function deleteAccount(name) {
  var gen = state.gen;
  state.deleting = name;
  state.pendingDelete = null;
  renderPrincipals();
  setStatus('Deleting service account ' + name + '…', 'busy');
  api('DELETE', '/service-accounts/' + encodeURIComponent(name)).then(
    function (res) {
      if (gen !== state.gen) return;
      state.deleting = null;
      var n = res && typeof res.revoked_tokens === 'number' ? res.revoked_tokens : null;
      var msg = 'Deleted service account ' + name + (n == null ? '.' : '; ' + n + ' token' + (n === 1 ? '' : 's') + ' revoked.');
      if (state.issueFor === name) closeIssueForm();
      showNotice(msg);
      setStatus(msg, 'ok');
      return refresh();
    },
    function (e) {
      if (gen !== state.gen) return;
      state.deleting = null;
      if (isAuthError(e)) return signOut(e.message);
      var msg = 'Could not delete service account ' + name + ': ' + e.message;
      showNotice(msg, 'error');
      setStatus(msg, 'error');
      renderPrincipals();
      if (e.status === 404) refresh();
    }
  );
}

export function createAccount(ev) {
  ev.preventDefault();
  var err = $('sa-error');
  show(err, false);
  var fail = function (msg) {
    err.textContent = msg;
    show(err, true);
  };
  var name = $('sa-name').value.trim();
  var owner = $('sa-owner').value.trim();
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) return fail('Name: lowercase letters, digits and dashes, starting with a letter or digit, up to 63.');
  if (!owner) return fail('Owner is required: the person or team answerable for the account.');
  var body = { name: name, groups: splitList($('sa-groups').value), owner: owner, description: $('sa-description').value.trim() };
  var gen = state.gen;
  var button = $('sa-create');
  button.disabled = true;
  api('POST', '/service-accounts', body).then(
    function () {
      button.disabled = false;
      if (gen !== state.gen) return;
      $('sa-form').reset();
      showNotice('Created service account ' + name + '. Issue its first token with “Issue token” on its row.');
      setStatus('Created service account ' + name, 'ok');
      refresh();
    },
    function (e) {
      button.disabled = false;
      if (gen !== state.gen) return;
      if (isAuthError(e)) return signOut(e.message);
      fail(e.message);
    }
  );
}
