// The audit trail panel, newest first, a page at a time.

import { state } from './state.js';
import { $, badge, clear, h } from './dom.js';
import { dateTime, relative } from './format.js';

var AUDIT_PAGE = 50;

export function auditPath() {
  return '/audit?limit=' + AUDIT_PAGE + (state.auditBefore != null ? '&before=' + encodeURIComponent(state.auditBefore) : '');
}

export function renderAudit() {
  var container = clear($('audit'));
  var a = state.data.audit;
  var rows = a && Array.isArray(a.entries) ? a.entries : [];
  $('audit-newest').disabled = state.auditBefore == null;
  var older = a && (a.next_before != null || rows.length >= AUDIT_PAGE) && rows.length > 0;
  $('audit-older').disabled = !older;
  $('audit-page').textContent = state.auditBefore == null ? 'newest first' : 'older entries, before #' + state.auditBefore;
  if (state.errors.audit && !a) {
    container.appendChild(h('p', { class: 'form-error', text: 'Could not load the audit trail: ' + state.errors.audit }));
    return;
  }
  if (!rows.length) {
    container.appendChild(h('p', { class: 'muted', text: 'No admin action recorded yet.' }));
    return;
  }
  container.appendChild(h('table', { class: 'data audit-table' },
    h('thead', null, h('tr', null,
      h('th', { class: 'num', text: '#' }), h('th', { text: 'Time' }), h('th', { text: 'Actor' }),
      h('th', { text: 'Action' }), h('th', { text: 'Object' }), h('th', { text: 'Outcome' }))),
    h('tbody', null, rows.map(function (e) {
      var ok = e.outcome === 'ok';
      return h('tr', { class: 'audit-row', 'data-seq': e.seq },
        h('td', { class: 'num muted', text: e.seq != null ? String(e.seq) : '' }),
        h('td', { class: 'nowrap', title: relative(e.at), text: dateTime(e.at) }),
        h('td', { title: e.actor_token || '' }, h('span', { text: e.actor || '' })),
        h('td', null, h('code', { text: e.action || '' })),
        h('td', { class: 'mono obj', title: versions(e), text: (e.object || '') + (versions(e) ? ' (' + versions(e) + ')' : '') }),
        h('td', null, badge(String(e.outcome || '?'), ok ? 'good' : 'bad')));
    }))));
}

// A change Terraform made outside the admin API: its route versions, old → new.
function versions(e) {
  if (e.old_version == null && e.new_version == null) return '';
  return (e.old_version || '∅') + ' → ' + (e.new_version || '∅');
}
