// The Model Endpoints dashboard. Served under a strict Content-Security-Policy:
// no inline code, no other origin. The DOM is built with createElement and
// textContent only; route names, subjects, descriptions, account and partner
// names come from callers and are never parsed as markup.
//
// This is the entry module: the code is in ./js/, one ES module per concern
// (DOM helpers, formatting, the admin API, the session and refresh, the data
// models, charts, one module per panel, CSV export), sharing one mutable state
// object (./js/state.js). Here the page's controls are wired and the page boots.
// Modules run in strict mode, as the single script did ('use strict').

import { state } from './js/state.js';
import { $, show } from './js/dom.js';
import { readStoredToken } from './js/api.js';
import { refresh, signIn, signOut } from './js/session.js';
import { renderTokenViews } from './js/render.js';
import { copyToken, createToken, hideNewToken, renderTokens, revoke, syncKind } from './js/tokens.js';
import { renderPrincipals } from './js/principals.js';
import { closeIssueForm, createAccount, deleteAccount, hideAccountToken, issueAccountToken, openIssueForm } from './js/accounts.js';
import { exportCsv } from './js/csv.js';

// ---------------------------------------------------------------------------
// Wiring
// ---------------------------------------------------------------------------

function init() {
  $('login-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var t = $('token').value.trim().replace(/^bearer\s+/i, '');
    var err = $('login-error');
    if (!t || !/^[\x21-\x7e]+$/.test(t)) {
      err.textContent = 'Paste the token itself: printable characters, no spaces.';
      show(err, true);
      return;
    }
    show(err, false);
    $('token').value = '';
    signIn(t);
  });
  $('logout').addEventListener('click', function () { signOut(null); });
  $('refresh').addEventListener('click', function () { refresh(); });
  ['routes', 'endpoints', 'tokens', 'budgets'].forEach(function (what) {
    $('export-' + what).addEventListener('click', function () { exportCsv(what); });
  });
  $('token-filter').addEventListener('input', renderTokens);
  $('hide-inactive').addEventListener('change', renderTokens);
  $('principal-filter').addEventListener('input', renderPrincipals);
  $('hide-idle').addEventListener('change', renderPrincipals);
  $('create-form').addEventListener('submit', createToken);
  $('new-kind').addEventListener('change', syncKind);
  $('copy-token').addEventListener('click', function () { copyToken('new-token-value', 'copy-result'); });
  $('dismiss-token').addEventListener('click', hideNewToken);
  $('sa-form').addEventListener('submit', createAccount);
  $('sa-issue-form').addEventListener('submit', issueAccountToken);
  $('sa-issue-cancel').addEventListener('click', closeIssueForm);
  $('sa-copy-token').addEventListener('click', function () { copyToken('sa-new-token-value', 'sa-copy-result'); });
  $('sa-dismiss-token').addEventListener('click', hideAccountToken);
  $('audit-older').addEventListener('click', function () {
    var a = state.data.audit;
    var rows = a && Array.isArray(a.entries) ? a.entries : [];
    if (!rows.length) return;
    var next = a.next_before != null ? a.next_before : rows[rows.length - 1].seq;
    state.auditHistory.push(state.auditBefore);
    state.auditBefore = next;
    refresh();
  });
  $('audit-newest').addEventListener('click', function () {
    state.auditBefore = null;
    state.auditHistory = [];
    refresh();
  });
  // Revoke, then confirm: in the tokens table and in a principal's token list.
  ['tokens', 'principals'].forEach(function (where) {
    $(where).addEventListener('click', function (ev) {
      var b = ev.target && ev.target.closest ? ev.target.closest('button[data-token-id]') : null;
      if (!b || b.disabled) return;
      var id = b.getAttribute('data-token-id');
      if (b.classList.contains('revoke')) {
        state.pendingRevoke = id;
        state.pendingRevokeIn = where;
        renderTokenViews();
        var c = $(where).querySelector('button.revoke-confirm');
        if (c) c.focus();
      } else if (b.classList.contains('revoke-confirm')) {
        revoke(id);
      } else if (b.classList.contains('revoke-cancel')) {
        state.pendingRevoke = null;
        state.pendingRevokeIn = null;
        renderTokenViews();
      }
    });
  });
  $('principals').addEventListener('click', function (ev) {
    var b = ev.target && ev.target.closest ? ev.target.closest('button[data-principal-key], button[data-account]') : null;
    if (!b || b.disabled) return;
    var key = b.getAttribute('data-principal-key');
    var name = b.getAttribute('data-account');
    if (key != null) {
      if (state.expanded.has(key)) state.expanded.delete(key);
      else state.expanded.add(key);
      renderTokenViews();
    } else if (b.classList.contains('sa-issue-open')) {
      openIssueForm(name);
    } else if (b.classList.contains('sa-delete')) {
      state.pendingDelete = name;
      renderPrincipals();
      var c = $('principals').querySelector('button.sa-delete-confirm');
      if (c) c.focus();
    } else if (b.classList.contains('sa-delete-confirm')) {
      deleteAccount(name);
    } else if (b.classList.contains('sa-delete-cancel')) {
      state.pendingDelete = null;
      renderPrincipals();
    }
  });
  document.addEventListener('keydown', function (ev) {
    if (ev.key !== 'Escape') return;
    if (state.pendingRevoke || state.pendingDelete) {
      state.pendingRevoke = null;
      state.pendingRevokeIn = null;
      state.pendingDelete = null;
      renderTokenViews();
    } else if (state.issueFor && $('sa-card').contains(document.activeElement)) {
      closeIssueForm();
    }
  });
  // A blocked resource or inline code would be a bug in this page: make it visible.
  document.addEventListener('securitypolicyviolation', function (ev) {
    if (window.console) console.error('CSP violation: ' + ev.violatedDirective + ' blocked ' + (ev.blockedURI || 'inline code'));
  });

  syncKind();
  var saved = readStoredToken();
  if (saved) signIn(saved);
  else signOut(null);
  document.body.setAttribute('data-app', 'ready');
}

// A module script is deferred, as the classic script was (defer): it runs once the
// document is parsed, before DOMContentLoaded, so init() runs at once here.
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
else init();
