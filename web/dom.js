// dom.js - building DOM nodes without innerHTML (no user text is ever parsed as HTML).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style") el.style.cssText = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// A notice in the page's live region: the server's sentence, never a blank.
export function notify(text, kind = "info") {
  const box = document.getElementById("notices");
  if (!box) return;
  const n = h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text,
    h("button", { type: "button", class: "link", "aria-label": "Dismiss", onclick: () => n.remove() }, "×"));
  box.append(n);
  if (kind !== "error") setTimeout(() => n.remove(), 8000);
}

export function errorText(e) {
  return e && e.message ? e.message : String(e);
}

export function fmtDuration(s) {
  if (!Number.isFinite(s) || s <= 0) return "–";
  s = Math.round(s);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export function fmtBytes(n) {
  if (!Number.isFinite(n)) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(0)} KB`;
  if (n < 1 << 30) return `${(n / (1 << 20)).toFixed(1)} MB`;
  return `${(n / (1 << 30)).toFixed(2)} GB`;
}
