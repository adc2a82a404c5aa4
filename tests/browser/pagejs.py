"""JavaScript the browser tests evaluate in the page: WCAG contrast of an element's text
against what is painted behind it, and a MutationObserver that records when a row's phase
changes (``Date.now()``, the wall clock the test compares with git's)."""

from __future__ import annotations

#: ``(element) => {ratio, fg, bg, large}``: the element's text colour and the backgrounds of
#: it and its ancestors composited on a white page through a 1x1 canvas (which also turns
#: any CSS colour syntax into sRGB), then WCAG 2 relative luminance and contrast ratio.
#: ``large`` is WCAG's large text (≥ 24 px, or ≥ 18.66 px bold: 3:1 is enough there).
CONTRAST = """(el) => {
  const cv = document.createElement('canvas'); cv.width = 1; cv.height = 1;
  const ctx = cv.getContext('2d', {willReadFrequently: true});
  const paint = (c) => { ctx.fillStyle = c; ctx.fillRect(0, 0, 1, 1); };
  const px = () => Array.from(ctx.getImageData(0, 0, 1, 1).data.slice(0, 3));
  paint('#ffffff');
  const chain = [];
  for (let e = el; e; e = e.parentElement) chain.unshift(e);
  for (const e of chain) paint(getComputedStyle(e).backgroundColor);
  const bg = px();
  paint(getComputedStyle(el).color);
  const fg = px();
  const lum = (rgb) => {
    const [r, g, b] = rgb.map((v) => { v /= 255;
      return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [l1, l2] = [lum(fg), lum(bg)].sort((a, b) => b - a);
  const style = getComputedStyle(el);
  const size = parseFloat(style.fontSize);
  const bold = parseInt(style.fontWeight, 10) >= 700;
  return {ratio: (l1 + 0.05) / (l2 + 0.05), fg, bg,
          large: size >= 24 || (bold && size >= 18.66), text: el.textContent.trim()};
}"""

#: ``(id) => void``: from now on, ``window.__phases`` lists ``[phase, Date.now()]`` each
#: time the ``data-phase`` of the element with this id changes (null while it is absent),
#: whatever the swap does (attribute change or a region's new children).
WATCH_PHASE = """(id) => {
  const read = () => { const r = document.getElementById(id); return r ? r.dataset.phase : null; };
  let last = read();
  window.__phases = [[last, Date.now()]];
  new MutationObserver(() => {
    const now = read();
    if (now !== last) { last = now; window.__phases.push([now, Date.now()]); }
  }).observe(document.documentElement,
             {subtree: true, childList: true, attributes: true, attributeFilter: ['data-phase']});
}"""

#: ``() => [{name, id, state, group, text, entities: [{kind, owner, ref, unmanaged}]}]``
HOSTS = """() => Array.from(document.querySelectorAll('article.host')).map((h) => ({
  name: h.dataset.name, id: h.dataset.host, state: h.dataset.state,
  group: h.closest('section.group') ? h.closest('section.group').dataset.group : null,
  text: h.textContent,
  entities: Array.from(h.querySelectorAll('li.entity')).map((e) => ({
    kind: e.dataset.kind, owner: e.dataset.owner, ref: e.dataset.ref,
    unmanaged: e.classList.contains('unmanaged'), text: e.textContent})),
}))"""

#: ``([ref, gone]) => bool``: an actor ``ref`` runs on an answering host other than ``gone``
MOVED = """([ref, gone]) => Array.from(document.querySelectorAll(
  'article.host[data-state="up"] li.entity[data-kind="actor"]')).some(
  (e) => e.dataset.ref === ref && e.closest('article.host').dataset.name !== gone)"""
