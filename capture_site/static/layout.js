// Response text as word spans, and the on-screen layout of every word and element.
//
// Markdown answers arrive rendered by the server (renderAnswer) with the same word spans:
// data-s/data-e are offsets into the raw answer text, data-i the raw text's word index.
//
// Character offsets are code-point indices into the stored response text (as Python indexes
// it), so char_start/char_end in the layout stream index the text in the database directly.
// Word boxes are relative to the response element, scroll included; element boxes are in
// viewport px. Every row carries the index of the turn whose responses are on screen (null while
// no turn is being rated).

const SPACE = /\s/u;

/** Render `text` into `el` as <p> paragraphs (split at blank lines) of <span class="w"> words. */
export function renderText(el, text) {
  el.replaceChildren();
  el.scrollTop = 0;
  const cps = Array.from(text);
  let p = null;
  let word = 0;
  let i = 0;
  const newParagraph = () => {
    p = document.createElement("p");
    p.dataset.paragraph = String(el.children.length);
    el.appendChild(p);
  };
  newParagraph();
  while (i < cps.length) {
    let j = i;
    if (SPACE.test(cps[i])) {
      while (j < cps.length && SPACE.test(cps[j])) j++;
      const gap = cps.slice(i, j).join("");
      const breaks = (gap.match(/\n/g) || []).length;
      if (breaks >= 2 && p.childNodes.length) newParagraph();
      else if (p.childNodes.length) p.appendChild(document.createTextNode(gap));
    } else {
      while (j < cps.length && !SPACE.test(cps[j])) j++;
      const span = document.createElement("span");
      span.className = "w";
      span.dataset.i = String(word++);
      span.dataset.s = String(i);
      span.dataset.e = String(j);
      span.textContent = cps.slice(i, j).join("");
      p.appendChild(span);
    }
    i = j;
  }
}

/** Render a response: the server's sanitised Markdown HTML (word spans carrying their offsets in
 * the raw text, capture_site/markdown.py) when the study shows Markdown, else plain paragraphs. */
export function renderAnswer(el, response) {
  if (typeof response.html === "string") {
    el.innerHTML = response.html;
    el.scrollTop = 0;
  } else {
    renderText(el, response.text);
  }
}

function elementRow(t, target, rect, turn) {
  return { t, target, kind: "element", index: -1, char_start: -1, char_end: -1,
           x: rect.left, y: rect.top, w: rect.width, h: rect.height, turn };
}

/** Layout rows for the elements (viewport boxes) of `targets`: {target: element}. */
export function measureElements(t, targets, turn) {
  const rows = [elementRow(t, "window", { left: 0, top: 0, width: innerWidth, height: innerHeight }, turn)];
  for (const [target, el] of Object.entries(targets)) {
    if (el && el.isConnected && !el.closest("[hidden]")) rows.push(elementRow(t, target, el.getBoundingClientRect(), turn));
  }
  return rows;
}

/** Layout rows for every word of a rendered response element. */
export function measureWords(t, target, el, turn) {
  const box = el.getBoundingClientRect();
  const rows = [];
  for (const span of el.querySelectorAll("span.w")) {
    const r = span.getBoundingClientRect();
    rows.push({ t, target, kind: "word", index: +span.dataset.i, char_start: +span.dataset.s,
                char_end: +span.dataset.e, x: r.left - box.left + el.scrollLeft,
                y: r.top - box.top + el.scrollTop, w: r.width, h: r.height, turn });
  }
  return rows;
}
