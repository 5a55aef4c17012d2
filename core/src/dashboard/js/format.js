// Formatting of numbers, sizes, durations and times.

import { h } from './dom.js';

var HOUR = 3600;
export var DAY = 86400;

export var numberFmt = new Intl.NumberFormat(undefined);

export function num(n) {
  return typeof n === 'number' && isFinite(n) ? numberFmt.format(n) : '0';
}

export function int(n) {
  return typeof n === 'number' && isFinite(n) ? n : 0;
}

export function compact(n) {
  n = int(n);
  if (n < 10000) return numberFmt.format(n);
  var units = [[1e12, 'T'], [1e9, 'B'], [1e6, 'M'], [1e3, 'k']];
  for (var i = 0; i < units.length; i++) {
    if (n >= units[i][0]) {
      var v = n / units[i][0];
      return (v >= 100 ? Math.round(v) : v.toFixed(1).replace(/\.0$/, '')) + units[i][1];
    }
  }
  return String(n);
}

export function bytes(n) {
  n = int(n);
  var units = ['B', 'KB', 'MB', 'GB', 'TB'];
  var i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return (i === 0 ? String(n) : n.toFixed(n >= 100 ? 0 : 1)) + ' ' + units[i];
}

export function ms(v) {
  if (typeof v !== 'number' || !isFinite(v)) return '—';
  if (v >= 1000) return (v / 1000).toFixed(v >= 10000 ? 1 : 2) + ' s';
  if (v >= 100) return Math.round(v) + ' ms';
  if (v >= 10) return v.toFixed(1).replace(/\.0$/, '') + ' ms';
  return v.toFixed(2).replace(/0$/, '').replace(/\.0$/, '') + ' ms';
}

export function pct(v) {
  if (typeof v !== 'number' || !isFinite(v)) return '—';
  var p = v * 100;
  if (p >= 100) return '100%';
  return (p >= 99 ? p.toFixed(2) : p.toFixed(1)) + '%';
}

export function nowS() {
  return Math.floor(Date.now() / 1000);
}

export function pad(n) {
  return n < 10 ? '0' + n : String(n);
}

export function clock(d) {
  return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
}

export function dateTime(unix) {
  if (typeof unix !== 'number') return '—';
  var d = new Date(unix * 1000);
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + clock(d);
}

export function span(secs) {
  secs = Math.abs(secs);
  if (secs < 60) return Math.round(secs) + ' s';
  if (secs < HOUR) return Math.floor(secs / 60) + ' min';
  if (secs < 2 * DAY) return Math.floor(secs / HOUR) + ' h';
  return Math.floor(secs / DAY) + ' d';
}

export function relative(unix) {
  if (typeof unix !== 'number' || !unix) return 'never';
  var d = unix - nowS();
  if (Math.abs(d) < 5) return 'just now';
  return d < 0 ? span(d) + ' ago' : 'in ' + span(d);
}

// A <time> element showing a relative time, with the exact time on hover.
export function when(unix, fallback) {
  if (typeof unix !== 'number' || !unix) return h('span', { class: 'muted', text: fallback != null ? fallback : 'never' });
  return h('time', { datetime: new Date(unix * 1000).toISOString(), title: dateTime(unix), text: relative(unix) });
}

export function list(v) {
  return Array.isArray(v) ? v.filter(function (x) { return typeof x === 'string'; }) : [];
}

export function splitList(text) {
  return text.split(',').map(function (x) { return x.trim(); }).filter(function (x) { return x.length > 0; });
}
