// The admin API (same origin, under /_gateway) and the admin token it is called with.

import { state } from './state.js';

var TOKEN_KEY = 'gateway_admin_token';
var API = '/_gateway';

export function ApiError(status, message, code) {
  this.status = status;
  this.message = message;
  this.code = code;
}

export function isAuthError(e) {
  return e instanceof ApiError && (e.status === 401 || e.status === 403);
}

export function api(method, path, body) {
  var headers = { Authorization: 'Bearer ' + state.token, Accept: 'application/json' };
  var init = { method: method, headers: headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  return fetch(API + path, init).then(
    function (res) {
      return res.text().then(function (text) {
        var data = null;
        if (text) {
          try {
            data = JSON.parse(text);
          } catch (_) {
            data = null;
          }
        }
        if (!res.ok) {
          var err = data && typeof data === 'object' ? data.error : null;
          var msg = err && typeof err.message === 'string' && err.message ? err.message : 'HTTP ' + res.status;
          throw new ApiError(res.status, msg, err && typeof err.code === 'string' ? err.code : null);
        }
        return data;
      });
    },
    function (e) {
      throw new ApiError(0, 'cannot reach the gateway (' + (e && e.message ? e.message : 'network error') + ')', 'network');
    }
  );
}

// The admin token lives in this page's memory only, never in web storage: routes on the
// same origin serve upstream content, and a page there must not find it. A reload asks again.
var heldToken = null;

export function readStoredToken() {
  return heldToken;
}

export function storeToken(t) {
  heldToken = t || null;
  try {
    // Sessions of earlier versions kept it in sessionStorage; clear that copy.
    sessionStorage.removeItem(TOKEN_KEY);
  } catch (_) {
    // Storage disabled: nothing to clear.
  }
}

// The token's own claims, for the header only; the gateway verifies it.
export function claims(token) {
  try {
    var part = token.split('.')[1];
    var b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    var raw = atob(b64);
    var bytesArr = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytesArr[i] = raw.charCodeAt(i);
    var c = JSON.parse(new TextDecoder().decode(bytesArr));
    return c && typeof c === 'object' ? c : null;
  } catch (_) {
    return null;
  }
}
