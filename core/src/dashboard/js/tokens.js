// The tokens panel, and the token actions: revoke, issue, copy.

import { state } from './state.js';
import { $, append, badge, clear, h, show } from './dom.js';
import { compact, dateTime, list, splitList, when } from './format.js';
import { api, isAuthError } from './api.js';
import { refresh, setStatus, signOut } from './session.js';
import { lastUse, meta, tokenList, tokenRequests, tokenState } from './models.js';
import { renderTokenViews } from './render.js';

export function renderTokens() {
  var container = clear($('tokens'));
  var all = tokenList();
  var filter = $('token-filter').value.trim().toLowerCase();
  var hideInactive = $('hide-inactive').checked;

  // Expiring soon.
  var soon = all.filter(function (t) { return tokenState(t) === 'expiring'; })
    .sort(function (a, b) { return a.expires_at - b.expires_at; });
  var exp = clear($('expiring'));
  show(exp, soon.length > 0);
  if (soon.length) {
    append(exp, [
      h('div', { class: 'expiring-title', text: 'Expiring soon (' + soon.length + ')' }),
      h('ul', null, soon.map(function (t) {
        return h('li', { 'data-token-id': t.id },
          h('strong', { text: t.subject || t.id }),
          t.description ? h('span', { class: 'muted', text: ' · ' + t.description }) : null,
          h('span', { class: 'expiring-when' }, ' expires ', when(t.expires_at)));
      })),
    ]);
  }

  if (state.errors.tokens && !state.data.tokens) {
    container.appendChild(h('p', { class: 'form-error', text: 'Could not load tokens: ' + state.errors.tokens }));
    return;
  }
  var rows = all.filter(function (t) {
    var st = tokenState(t);
    if (hideInactive && (st === 'revoked' || st === 'expired')) return false;
    if (!filter) return true;
    return [t.id, t.subject, t.description, list(t.groups).join(','), t.owner, meta(t, 'partner'), meta(t, 'contract_id')].some(function (v) {
      return typeof v === 'string' && v.toLowerCase().indexOf(filter) >= 0;
    });
  });
  if (!rows.length) {
    container.appendChild(h('p', { class: 'muted', text: all.length ? 'No token matches.' : 'No tokens issued yet.' }));
    return;
  }
  container.appendChild(h('table', { class: 'data tokens-table' },
    h('thead', null, h('tr', null,
      h('th', { text: 'Token' }), h('th', { text: 'Kind' }), h('th', { text: 'Groups' }),
      h('th', { text: 'Expires' }), h('th', { text: 'Last use' }), h('th', { class: 'num', text: 'Requests' }), h('th', { class: 'actions-col', text: '' }))),
    h('tbody', null, rows.map(function (t) { return tokenRow(t, 'tokens'); }))));
}

export function tokensTableHead() {
  return h('thead', null, h('tr', null,
    h('th', { text: 'Token' }), h('th', { text: 'Kind' }), h('th', { text: 'Groups' }),
    h('th', { text: 'Expires' }), h('th', { text: 'Last use' }), h('th', { class: 'num', text: 'Requests' }), h('th', { class: 'actions-col', text: '' })));
}

// One token as a table row, with its revoke action. `where` is the container
// it is shown in: 'tokens' (rows of class token-row) or 'principals' (rows of
// class principal-token), so that each container asks for its own confirmation.
export function tokenRow(t, where) {
  var st = tokenState(t);
  var groups = list(t.groups);
  var allow = Array.isArray(t.routes) ? list(t.routes) : null;
  var requests = tokenRequests(t);
  var action;
  if (st === 'revoked') {
    action = h('span', { class: 'state' }, badge('revoked', 'bad'), when(t.revoked_at, ''));
  } else if (st === 'expired') {
    action = badge('expired', 'neutral');
  } else if (state.revoking === t.id) {
    action = h('button', { type: 'button', class: 'btn btn-small btn-danger', disabled: true, text: 'Revoking…' });
  } else if (state.pendingRevoke === t.id && state.pendingRevokeIn === where) {
    action = h('span', { class: 'confirm' },
      h('button', { type: 'button', class: 'btn btn-small btn-danger revoke-confirm', 'data-token-id': t.id, text: 'Confirm revoke' }),
      h('button', { type: 'button', class: 'btn btn-small btn-quiet revoke-cancel', 'data-token-id': t.id, text: 'Cancel' }));
  } else {
    action = h('button', { type: 'button', class: 'btn btn-small revoke', 'data-token-id': t.id, text: 'Revoke', 'aria-label': 'Revoke token ' + t.id });
  }
  var by = t.created_by ? ' by ' + t.created_by : null;
  var who = [];
  if (typeof t.owner === 'string' && t.owner) who.push('owner ' + t.owner);
  if (t.kind === 'partner') {
    who.push(meta(t, 'partner') ? 'partner ' + meta(t, 'partner') : 'no partner name');
    if (meta(t, 'contract_id')) who.push('contract ' + meta(t, 'contract_id'));
  }
  return h('tr', { class: (where === 'principals' ? 'principal-token ' : 'token-row ') + st, 'data-token-id': t.id },
    h('td', { class: 'who' },
      h('div', null,
        h('strong', { class: 'subject', text: t.subject || '(no subject)' }),
        t.description ? h('span', { class: 'desc', text: t.description }) : null),
      h('div', { class: 'tok-id mono muted', text: t.id }),
      who.length ? h('div', { class: 'small tok-principal', text: who.join(' · ') }) : null,
      h('div', { class: 'muted small created' }, 'created ', when(t.created_at), by)),
    h('td', null, badge(String(t.kind || '?'), 'kind-' + (t.kind || 'unknown'))),
    h('td', null,
      groups.length ? groups.map(function (g) { return h('span', { class: 'chip', text: g }); }) : h('span', { class: 'muted', text: '—' }),
      allow ? h('div', { class: 'small muted', text: 'routes: ' + (allow.length ? allow.join(', ') : 'none') }) : null),
    h('td', { class: 'nowrap' + (st === 'expiring' ? ' warn-text' : '') }, when(t.expires_at, '—')),
    h('td', { class: 'nowrap' }, when(lastUse(t))),
    h('td', { class: 'num', text: compact(requests) }),
    h('td', { class: 'actions-col' }, action));
}

// ---------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------

export function revoke(id) {
  var gen = state.gen;
  state.revoking = id;
  state.pendingRevoke = null;
  state.pendingRevokeIn = null;
  renderTokenViews();
  setStatus('Revoking ' + id + '…', 'busy');
  api('DELETE', '/tokens/' + encodeURIComponent(id)).then(
    function () {
      if (gen !== state.gen) return;
      state.revoking = null;
      setStatus('Revoked ' + id, 'ok');
      return refresh();
    },
    function (e) {
      if (gen !== state.gen) return;
      state.revoking = null;
      if (isAuthError(e)) return signOut(e.message);
      var msg = 'Could not revoke ' + id + ': ' + e.message;
      setStatus(msg, 'error');
      renderTokenViews();
      if (e.status === 409) {
        refresh().then(function () {
          if (gen === state.gen) setStatus(msg, 'error');
        });
      }
    }
  );
}

export function hideNewToken() {
  $('new-token-value').value = '';
  $('new-token-meta').textContent = '';
  $('copy-result').textContent = '';
  show($('new-token'), false);
}

export function createToken(ev) {
  ev.preventDefault();
  var err = $('create-error');
  show(err, false);
  var subject = $('new-subject').value.trim();
  var amount = Number($('new-ttl').value);
  var unit = Number($('new-ttl-unit').value);
  var fail = function (msg) {
    err.textContent = msg;
    show(err, true);
  };
  if (!subject) return fail('Subject is required.');
  if (!(amount > 0) || Math.floor(amount) !== amount) return fail('Lifetime must be a whole number above zero.');
  var body = {
    subject: subject,
    kind: $('new-kind').value,
    groups: splitList($('new-groups').value),
    ttl_seconds: amount * unit,
    description: $('new-description').value.trim(),
  };
  var routes = splitList($('new-routes').value);
  if (routes.length) body.routes = routes;
  if (body.kind === 'partner') {
    var partner = $('new-partner').value.trim();
    var contract = $('new-contract').value.trim();
    if (!/^[a-z0-9-]{1,64}$/.test(partner)) return fail('A partner token names its partner: lowercase letters, digits and dashes, up to 64.');
    if (!contract) return fail('A partner token names the contract it is issued under.');
    if (!routes.length) return fail('A partner token needs a routes allow-list.');
    body.metadata = { partner: partner, contract_id: contract };
  }
  var gen = state.gen;
  var button = $('create');
  button.disabled = true;
  api('POST', '/tokens', body).then(
    function (res) {
      button.disabled = false;
      if (gen !== state.gen) return;
      $('create-form').reset();
      syncKind();
      hideNewToken();
      $('new-token-value').value = res && typeof res.token === 'string' ? res.token : '';
      $('new-token-meta').textContent = 'Token ' + (res && res.id ? res.id : '') + ' for ' + subject +
        (res && typeof res.expires_at === 'number' ? ', expires ' + dateTime(res.expires_at) : '') + '.';
      show($('new-token'), true);
      $('new-token-value').focus();
      $('new-token-value').select();
      setStatus('Issued ' + (res && res.id ? res.id : 'a token') + ' for ' + subject, 'ok');
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

export function syncKind() {
  show($('partner-fields'), $('new-kind').value === 'partner');
}

export function copyToken(boxId, resultId) {
  var box = $(boxId);
  var result = $(resultId);
  var done = function () { result.textContent = 'Copied.'; };
  var fallback = function () {
    box.focus();
    box.select();
    try {
      result.textContent = document.execCommand('copy') ? 'Copied.' : 'Select the text and copy it.';
    } catch (_) {
      result.textContent = 'Select the text and copy it.';
    }
  };
  if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(box.value).then(done, fallback);
  else fallback();
}
