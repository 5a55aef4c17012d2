// SVG charts: requests per minute, the status mix, and share bars.

import { h, own, s } from './dom.js';
import { clock, compact, int, num, pct } from './format.js';

export var STATUS_ORDER = ['2xx', '3xx', '4xx', '5xx', '1xx', 'other'];

function niceMax(v) {
  if (v <= 4) return 4;
  var p = Math.pow(10, Math.floor(Math.log10(v)));
  var steps = [1, 2, 2.5, 5, 10];
  for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
  return 10 * p;
}

export function rateChart(series) {
  var W = 240, H = 56;
  var n = Math.max(series.length, 60);
  var max = 0;
  series.forEach(function (p) { max = Math.max(max, int(p && p.requests)); });
  var top = niceMax(max);
  var slot = W / n;
  var bw = Math.max(slot - 0.8, 0.6);
  var svg = s('svg', { class: 'chart', viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none', role: 'img', 'aria-label': 'Requests and 5xx per minute over the last 60 minutes' },
    s('line', { class: 'grid', x1: 0, x2: W, y1: 0.5, y2: 0.5, 'vector-effect': 'non-scaling-stroke' }),
    s('line', { class: 'grid', x1: 0, x2: W, y1: H / 2, y2: H / 2, 'vector-effect': 'non-scaling-stroke' }),
    s('line', { class: 'axis', x1: 0, x2: W, y1: H - 0.5, y2: H - 0.5, 'vector-effect': 'non-scaling-stroke' }));
  var offset = n - series.length;
  series.forEach(function (p, i) {
    var req = int(p && p.requests);
    var err = Math.min(int(p && p.errors), req || int(p && p.errors));
    var x = (offset + i) * slot + (slot - bw) / 2;
    var g = s('g', null);
    var label = (p && typeof p.at === 'number' ? clock(new Date(p.at * 1000)).slice(0, 5) + ' · ' : '') + req + ' requests, ' + int(p && p.errors) + ' 5xx';
    g.appendChild(s('title', { text: label }));
    // A transparent full-height rect gives every minute a hover target.
    g.appendChild(s('rect', { class: 'hit', x: offset * slot + i * slot, y: 0, width: slot, height: H }));
    if (req > 0) {
      var rh = Math.max((req / top) * H, 1);
      g.appendChild(s('rect', { class: 'bar-req', x: x, y: H - rh, width: bw, height: rh }));
    }
    if (err > 0) {
      var eh = Math.max((err / top) * H, 1);
      g.appendChild(s('rect', { class: 'bar-err', x: x, y: H - eh, width: bw, height: eh }));
    }
    svg.appendChild(g);
  });
  return h('div', { class: 'chart-wrap' },
    h('div', { class: 'chart-y' }, h('span', { text: compact(top) }), h('span', { text: compact(top / 2) }), h('span', { text: '0' })),
    h('div', { class: 'chart-main' },
      svg,
      h('div', { class: 'chart-x' }, h('span', { text: '60 min ago' }), h('span', { text: '30' }), h('span', { text: 'now' }))),
    max === 0 ? h('div', { class: 'chart-empty', text: 'no requests in the last hour' }) : null);
}

export function statusMix(by) {
  var parts = [];
  var total = 0;
  STATUS_ORDER.forEach(function (k) {
    var v = int(own(by, k));
    if (k === '2xx' || k === '4xx' || k === '5xx' || v > 0) parts.push([k, v]);
    total += v;
  });
  var svg = s('svg', { class: 'stack', viewBox: '0 0 100 10', preserveAspectRatio: 'none', role: 'img', 'aria-label': 'Responses by status class' });
  if (total === 0) {
    svg.appendChild(s('rect', { class: 'st-none', x: 0, y: 0, width: 100, height: 10 }));
  } else {
    var x = 0;
    parts.forEach(function (p) {
      if (!p[1]) return;
      var w = (p[1] / total) * 100;
      svg.appendChild(s('rect', { class: 'st-' + p[0], x: x, y: 0, width: w, height: 10 }, s('title', { text: p[0] + ': ' + p[1] })));
      x += w;
    });
  }
  return h('div', { class: 'status-mix' },
    h('div', { class: 'section-title', text: 'Status mix' }),
    svg,
    h('ul', { class: 'mix-legend' },
      parts.map(function (p) {
        return h('li', { 'data-class': p[0] },
          h('span', { class: 'swatch st-' + p[0] }),
          h('span', { class: 'mix-k', text: p[0] }),
          h('span', { class: 'mix-v', text: num(p[1]) }),
          total ? h('span', { class: 'muted', text: ' ' + pct(p[1] / total) }) : null);
      })));
}

export function shareBar(f) {
  return s('svg', { class: 'share', viewBox: '0 0 100 6', preserveAspectRatio: 'none', 'aria-hidden': 'true' },
    s('rect', { class: 'share-bg', x: 0, y: 0, width: 100, height: 6 }),
    f > 0 ? s('rect', { class: 'share-fill', x: 0, y: 0, width: Math.max(f * 100, 1), height: 6 }) : null);
}

export function budgetBar(share) {
  var cls = share >= 1 ? ' bad' : share >= 0.8 ? ' warn' : '';
  return s('svg', { class: 'share budget-bar', viewBox: '0 0 100 6', preserveAspectRatio: 'none', 'aria-hidden': 'true' },
    s('rect', { class: 'share-bg', x: 0, y: 0, width: 100, height: 6 }),
    share > 0 ? s('rect', { class: 'budget-fill' + cls, x: 0, y: 0, width: Math.max(Math.min(share, 1) * 100, 1), height: 6 }) : null);
}
