// The partners panel: a card per partner with its usage and tokens.

import { state } from './state.js';
import { $, badge, clear, entries, h } from './dom.js';
import { compact, dateTime, int, list, pct, when } from './format.js';
import { isLive, meta, partnerModels, tokenList, tokenRequests, tokenState } from './models.js';
import { shareBar } from './charts.js';

export function renderPartners() {
  var el = clear($('partners'));
  var partners = partnerModels();
  var unnamed = tokenList().filter(function (t) { return t.kind === 'partner' && !meta(t, 'partner'); }).length;
  var note = [];
  if (state.errors.metrics) note.push('usage unavailable: ' + state.errors.metrics);
  if (unnamed) note.push(unnamed + ' partner token' + (unnamed === 1 ? ' names' : 's name') + ' no partner (issued before partner names were required)');
  $('partners-note').textContent = note.join(' · ');
  if (!partners.length) {
    el.appendChild(h('div', { class: 'card empty', text: 'No partners yet. Issue a token of kind partner, with the partner\'s name and contract id.' }));
    return;
  }
  partners.forEach(function (p) { el.appendChild(partnerCard(p)); });
}

function partnerCard(p) {
  var m = p.m || {};
  var requests = int(m.requests);
  var used = entries(m.routes).map(function (kv) { return [kv[0], int(kv[1])]; }).filter(function (kv) { return kv[1] > 0; })
    .sort(function (a, b) { return b[1] - a[1] || (a[0] < b[0] ? -1 : 1); });
  var live = p.tokens.filter(function (t) { return isLive(tokenState(t)); });
  var contracts = [];
  var allowed = [];
  live.forEach(function (t) {
    if (meta(t, 'contract_id') && contracts.indexOf(meta(t, 'contract_id')) < 0) contracts.push(meta(t, 'contract_id'));
    list(t.routes).forEach(function (r) { if (allowed.indexOf(r) < 0) allowed.push(r); });
  });
  var sub = [];
  if (contracts.length) sub.push((contracts.length === 1 ? 'contract ' : 'contracts ') + contracts.join(', '));
  if (allowed.length) sub.push('may call ' + allowed.join(', '));
  var tokens = p.tokens.slice().sort(function (a, b) {
    var la = isLive(tokenState(a)), lb = isLive(tokenState(b));
    if (la !== lb) return la ? -1 : 1;
    return int(b.created_at) - int(a.created_at);
  });

  return h('article', { class: 'card partner', 'data-partner': p.name },
    h('div', { class: 'route-head' },
      h('h3', { class: 'route-name partner-name', title: p.name, text: p.name }),
      h('div', { class: 'badges' },
        live.length ? badge(live.length + ' active token' + (live.length === 1 ? '' : 's'), 'good') : badge('no active token', 'warn'))),
    sub.length ? h('p', { class: 'route-sub muted small', text: sub.join(' · ') }) : null,
    h('div', { class: 'route-stats partner-stats' },
      h('div', { class: 'kv' },
        h('span', { class: 'k', text: 'Requests' }),
        h('span', { class: 'v partner-requests', 'data-value': requests, text: String(requests) })),
      h('div', { class: 'kv' },
        h('span', { class: 'k', text: 'Routes used' }),
        h('span', { class: 'v partner-routes-count', text: String(used.length) })),
      h('div', { class: 'kv' },
        h('span', { class: 'k', text: 'Last seen' }),
        h('span', { class: 'v partner-last-seen' }, when(m.last_seen))),
      h('div', { class: 'kv llm' },
        h('span', { class: 'k', text: 'LLM tokens in / out' }),
        h('span', { class: 'v', title: 'prompt: ' + int(m.prompt_tokens) + ', completion: ' + int(m.completion_tokens) },
          h('span', { class: 'partner-prompt-tokens', text: compact(m.prompt_tokens) }),
          h('span', { class: 'sep', text: ' / ' }),
          h('span', { class: 'partner-completion-tokens', text: compact(m.completion_tokens) })))),
    h('div', { class: 'section' },
      h('div', { class: 'section-head' }, h('span', { class: 'section-title', text: 'Requests by route' })),
      used.length
        ? h('table', { class: 'mini partner-routes' },
          h('tbody', null, used.map(function (kv) {
            return h('tr', { 'data-partner-route': kv[0] },
              h('td', { class: 'mono route-cell', title: kv[0], text: kv[0] }),
              h('td', { class: 'bar-cell' }, shareBar(kv[1] / Math.max(requests, kv[1], 1))),
              h('td', { class: 'num', text: compact(kv[1]) + ' req' }),
              h('td', { class: 'num muted', text: requests ? pct(kv[1] / requests) : '' }));
          })))
        : h('p', { class: 'muted small', text: 'No requests from this partner yet.' })),
    h('div', { class: 'section' },
      h('div', { class: 'section-head' }, h('span', { class: 'section-title', text: 'Partner tokens' })),
      tokens.length
        ? h('table', { class: 'mini partner-tokens' },
          h('thead', null, h('tr', null,
            h('th', { class: 'pt-who', text: 'Token' }), h('th', { class: 'pt-contract', text: 'Contract' }),
            h('th', { class: 'pt-expires', text: 'Expires' }), h('th', { class: 'num pt-requests', text: 'Requests' }))),
          h('tbody', null, tokens.map(function (t) {
            var st = tokenState(t);
            return h('tr', { class: 'partner-token ' + st, 'data-token-id': t.id },
              h('td', { class: 'who' },
                h('span', { class: 'subject', title: t.id, text: t.subject || t.id }),
                t.description ? h('span', { class: 'desc muted', text: t.description }) : null),
              h('td', { class: 'partner-contract mono', text: meta(t, 'contract_id') || '—' }),
              h('td', { class: 'nowrap' + (st === 'expiring' ? ' warn-text' : '') },
                st === 'revoked' ? badge('revoked', 'bad', t.revoked_at ? 'Revoked ' + dateTime(t.revoked_at) : null)
                  : st === 'expired' ? badge('expired', 'neutral', 'Expired ' + dateTime(t.expires_at))
                    : when(t.expires_at, '—')),
              h('td', { class: 'num', text: compact(tokenRequests(t)) }));
          })))
        : h('p', { class: 'muted small', text: 'No tokens name this partner.' })));
}
