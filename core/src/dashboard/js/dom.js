// DOM helpers. The DOM is built with createElement and textContent only: route
// names, subjects, descriptions, account and partner names come from callers and
// are never parsed as markup.

var SVG_NS = 'http://www.w3.org/2000/svg';

export function $(id) {
  return document.getElementById(id);
}

export function own(obj, key) {
  return obj && typeof obj === 'object' && Object.prototype.hasOwnProperty.call(obj, key) ? obj[key] : undefined;
}

export function entries(obj) {
  return obj && typeof obj === 'object' ? Object.keys(obj).map(function (k) { return [k, obj[k]]; }) : [];
}

export function append(el, children) {
  for (var i = 0; i < children.length; i++) {
    var c = children[i];
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (typeof c === 'object' && c.nodeType) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
  return el;
}

function setAttrs(el, attrs) {
  if (!attrs) return;
  Object.keys(attrs).forEach(function (k) {
    var v = attrs[k];
    if (v == null || v === false) return;
    if (k === 'text') el.textContent = String(v);
    else if (typeof v === 'function') el.addEventListener(k, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  });
}

// h('div', {class: 'x', 'data-a': 1}, child, 'text', [more])
export function h(tag, attrs) {
  var el = document.createElement(tag);
  setAttrs(el, attrs);
  return append(el, Array.prototype.slice.call(arguments, 2));
}

export function s(tag, attrs) {
  var el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  return append(el, Array.prototype.slice.call(arguments, 2));
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function show(el, on) {
  el.hidden = !on;
}

export function badge(text, cls, title) {
  return h('span', { class: 'badge ' + (cls || ''), text: text, title: title || null });
}
