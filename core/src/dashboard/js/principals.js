// The principals panel: tokens grouped by who they stand for, service accounts
// among them.

import { state } from './state.js';
import { $, badge, clear, h, show } from './dom.js';
import { compact, when } from './format.js';
import { principalModels } from './models.js';
import { tokenRow, tokensTableHead } from './tokens.js';

export function renderPrincipals() {
  var container = clear($('principals'));
  var accountsOn = state.accountsApi !== false;
  show($('sa-card'), accountsOn);
  $('identity-row').classList.toggle('single', !accountsOn);
  $('principals-note').textContent = state.errors.accounts ? 'service accounts unavailable: ' + state.errors.accounts : '';
  if (state.errors.tokens && !state.data.tokens) {
    container.appendChild(h('p', { class: 'form-error', text: 'Could not load tokens: ' + state.errors.tokens }));
    return;
  }
  var all = principalModels();
  var filter = $('principal-filter').value.trim().toLowerCase();
  var hideIdle = $('hide-idle').checked;
  var rows = all.filter(function (p) {
    if (hideIdle && !p.active && !p.account) return false;
    if (!filter) return true;
    var a = p.account || {};
    return [p.subject, p.owner, p.partner, p.contract, p.groups.join(','), a.owner, a.description, p.account ? 'service account' : p.kind].some(function (v) {
      return typeof v === 'string' && v.toLowerCase().indexOf(filter) >= 0;
    });
  });
  if (!rows.length) {
    container.appendChild(h('p', { class: 'muted', text: all.length ? 'No principal matches.' : 'No principals yet: issue a token or create a service account.' }));
    return;
  }
  container.appendChild(h('table', { class: 'data principals-table' },
    h('thead', null, h('tr', null,
      h('th', { text: 'Principal' }), h('th', { text: 'Kind and groups' }),
      h('th', { class: 'num', text: 'Active tokens' }), h('th', { text: 'Last use' }), h('th', { class: 'num', text: 'Requests' }), h('th', { class: 'actions-col', text: '' }))),
    rows.map(principalBody)));
}

function principalBody(p) {
  var open = state.expanded.has(p.key) && p.tokens.length > 0;
  var a = p.account;
  var detail = [];
  if (a) {
    if (a.owner) detail.push(h('span', null, 'owner ', h('strong', { class: 'principal-owner', text: String(a.owner) })));
    if (a.description) detail.push(h('span', { text: String(a.description) }));
  } else {
    if (p.owner) detail.push(h('span', null, 'owner ', h('strong', { class: 'principal-owner', text: p.owner })));
    if (p.kind === 'partner') {
      detail.push(h('span', null, 'partner ', h('strong', { class: 'principal-partner', text: p.partner || '(none)' })));
      if (p.contract) detail.push(h('span', null, 'contract ', h('strong', { class: 'principal-contract', text: p.contract })));
    }
  }
  var kinds = [];
  if (a) kinds.push(badge('service account', 'kind-service', 'Service account'));
  else kinds.push(badge(p.kind, 'kind-' + p.kind));
  if (p.owner) kinds.push(badge('self-service', 'neutral', 'Issued by its owner through /_gateway/me/tokens'));

  var name = [
    h('strong', { class: 'principal-name', text: p.subject || '(no subject)' }),
  ];
  var head = p.tokens.length
    ? h('button', {
      type: 'button', class: 'principal-toggle', 'data-principal-key': p.key, 'aria-expanded': open ? 'true' : 'false',
      title: (open ? 'Hide' : 'Show') + ' its tokens',
    }, h('span', { class: 'chev', 'aria-hidden': 'true' }), name)
    : h('span', { class: 'principal-toggle static' }, h('span', { class: 'chev none', 'aria-hidden': 'true' }), name);

  var actions = [];
  if (a) {
    if (state.deleting === a.name) {
      actions.push(h('button', { type: 'button', class: 'btn btn-small btn-danger', disabled: true, text: 'Deleting…' }));
    } else if (state.pendingDelete === a.name) {
      actions.push(h('span', { class: 'confirm' },
        h('span', { class: 'small bad confirm-note', text: p.active ? 'Also revokes ' + p.active + ' token' + (p.active === 1 ? '' : 's') : 'No active token' }),
        h('button', { type: 'button', class: 'btn btn-small btn-danger sa-delete-confirm', 'data-account': a.name, text: 'Confirm delete' }),
        h('button', { type: 'button', class: 'btn btn-small btn-quiet sa-delete-cancel', 'data-account': a.name, text: 'Cancel' })));
    } else {
      actions.push(h('span', { class: 'row-actions' },
        h('button', { type: 'button', class: 'btn btn-small sa-issue-open', 'data-account': a.name, text: 'Issue token', 'aria-label': 'Issue a token for service account ' + a.name }),
        h('button', { type: 'button', class: 'btn btn-small sa-delete', 'data-account': a.name, text: 'Delete', 'aria-label': 'Delete service account ' + a.name })));
    }
  }

  var body = h('tbody', {
    class: 'principal' + (open ? ' open' : '') + (p.active ? '' : ' idle'),
    'data-principal': p.key,
    'data-kind': a ? 'service-account' : p.kind,
    'data-service-account': a ? a.name : null,
  },
    h('tr', { class: 'principal-row' },
      h('td', { class: 'who' },
        head,
        detail.length ? h('div', { class: 'small muted principal-detail' }, detail.map(function (d, i) { return i ? [' · ', d] : d; })) : null,
        a ? h('div', { class: 'muted small created' }, 'created ', when(a.created_at), a.created_by ? ' by ' + a.created_by : null) : null),
      h('td', { class: 'principal-kind' },
        h('div', { class: 'badges-inline' }, kinds),
        p.groups.length ? h('div', { class: 'principal-groups' }, p.groups.map(function (g) { return h('span', { class: 'chip', text: g }); })) : null),
      h('td', { class: 'num' },
        h('span', { class: 'principal-active', 'data-value': p.active, text: String(p.active) }),
        p.tokens.length !== p.active ? h('div', { class: 'muted small principal-total', text: p.tokens.length ? 'of ' + p.tokens.length : 'no tokens' }) : null),
      h('td', { class: 'nowrap principal-last-use' }, when(p.lastUse)),
      h('td', { class: 'num principal-requests', text: compact(p.requests) }),
      h('td', { class: 'actions-col' }, actions)));
  if (open) {
    body.appendChild(h('tr', { class: 'principal-tokens' },
      h('td', { colspan: 6 },
        h('table', { class: 'data tokens-table nested' },
          tokensTableHead(),
          h('tbody', null, p.tokens.map(function (t) { return tokenRow(t, 'principals'); }))))));
  }
  return body;
}
