// Loaded by every participant page: stale pages reload, windows below the study's minimum size
// get the "please use a larger window" page, and forms say that they are saving.

// A page restored from the back-forward cache shows an old state of the study: ask the server
// for the current one (the flow's pages are also sent with Cache-Control: no-store).
addEventListener("pageshow", (e) => { if (e.persisted) location.reload(); });

const body = document.body;
const minW = +body.dataset.minWidth || 0;
const minH = +body.dataset.minHeight || 0;
const gate = document.getElementById("viewport-gate");
const main = document.querySelector("main.page");

// The gate page as the server last heard of it (the dashboard's "why they stopped": who left at
// it): reported when it is shown and when the window is large enough again, not on every resize.
let reported = gate ? gate.dataset.tooSmall === "1" : false;

function report(tooSmall) {
  if (!gate || !gate.dataset.log || tooSmall === reported) return;
  reported = tooSmall;
  const form = new FormData();
  form.append("csrf_token", gate.dataset.csrf);
  form.append("too_small", tooSmall ? "1" : "0");
  form.append("width", String(innerWidth));
  form.append("height", String(innerHeight));
  // keepalive: who sees the gate page may close the tab at once
  fetch(gate.dataset.log, { method: "POST", body: form, keepalive: true }).catch(() => {});
}

/** Whether the window is large enough; shows or hides the gate page. */
export function checkViewport() {
  const ok = innerWidth >= minW && innerHeight >= minH;
  if (gate && main) {
    gate.hidden = ok;
    main.hidden = !ok;
    const size = document.getElementById("viewport-size");
    if (size) size.textContent = `${innerWidth} × ${innerHeight}`;
    report(!ok);
  }
  body.classList.toggle("too-small", !ok);
  return ok;
}

if ((minW || minH) && gate) { // pages without a gate (the hand-offs) need no large window
  checkViewport();
  addEventListener("resize", checkViewport);
}

// A page sent back with error messages: the focus starts at them, so that a screen reader reads
// them first (each names its question) and the keyboard goes on from there to the fields.
const errors = main && main.querySelector(".errors");
if (errors) {
  errors.tabIndex = -1;
  errors.focus({ preventScroll: true });
}

// A page drawn as the answer to a form (one sent back with error messages, the declined page):
// its history entry becomes a plain visit of the same address, so that Back to it or a reload
// asks for the current step instead of Chromium's "Confirm Form Resubmission" (ERR_CACHE_MISS:
// the flow's pages are no-store) or sending the old form again. What was typed is kept below.
history.replaceState(history.state, "", location.href);

// Step forms keep what was typed or chosen until it is sent: a reload, or Back to a page sent
// back with errors, shows it again (the server fills in only the answers of the request it
// answers). Kept in this tab's sessionStorage under the form's data-keep name (the participant
// and step, keyed by the server); every other step's is removed, so answers sent are not kept.
const KEEP = "gazepref:form:";
const keepForms = [...document.querySelectorAll("form.step-form[data-keep]")];
const keepKeys = new Set(keepForms.map((f) => KEEP + f.dataset.keep));
try {
  for (const key of Object.keys(sessionStorage)) {
    if (key.startsWith(KEEP) && !keepKeys.has(key)) sessionStorage.removeItem(key);
  }
} catch { /* storage blocked: nothing kept */ }

function answersOf(form) {
  return [...new FormData(form).entries()].filter(
    ([name, value]) => name !== "csrf_token" && name !== "step" && typeof value === "string" && value !== "");
}

for (const form of keepForms) {
  const key = KEEP + form.dataset.keep;
  let kept = [];
  try { kept = JSON.parse(sessionStorage.getItem(key) || "[]"); } catch { kept = []; }
  if (Array.isArray(kept)) {
    for (const [name, value] of kept) { // only where the page has no answer of its own
      const fields = [...form.elements].filter((el) => el.name === name);
      if (fields.some((el) => (el.type === "radio" || el.type === "checkbox") ? el.checked : el.value !== "")) continue;
      for (const el of fields) {
        if (el.type === "radio" || el.type === "checkbox") el.checked = el.value === value;
        else el.value = value;
      }
    }
  }
  const keep = () => {
    try {
      const answers = answersOf(form);
      if (answers.length) sessionStorage.setItem(key, JSON.stringify(answers));
      else sessionStorage.removeItem(key);
    } catch { /* storage full or blocked */ }
  };
  form.addEventListener("input", keep);
  form.addEventListener("change", keep);
}

// The final page of a withdrawal: what this browser still holds of the study goes too (unsent
// telemetry batches, which the server would refuse now, chat drafts and unsent ratings, form
// answers). Its outbox.js is left out, so nothing is sent from it. A stored outbox
// ("gazepref:outbox:...", outbox.js) goes only when it was stored with this participant's token
// (#forget-token) or holds none: on a shared computer another participant's unsent batches stay,
// for their own pages to send.
if (document.body.classList.contains("forget-study-data")) {
  const forget = document.getElementById("forget-token");
  const token = forget ? forget.dataset.token : null;
  const othersOutbox = (key, kept) => {
    if (kept !== localStorage || !token || !key.startsWith("gazepref:outbox:")) return false;
    try {
      const box = JSON.parse(kept.getItem(key));
      return !!box && typeof box.token === "string" && box.token !== "" && box.token !== token;
    } catch {
      return false;
    }
  };
  for (const kept of [localStorage, sessionStorage]) {
    try {
      for (const key of Object.keys(kept)) if (key.startsWith("gazepref:") && !othersOutbox(key, kept)) kept.removeItem(key);
    } catch { /* storage blocked: nothing kept */ }
  }
}

// Step forms: say that the answer is being saved (a slow connection otherwise looks stuck).
document.addEventListener("submit", (e) => {
  const form = e.target;
  if (!form.classList || !form.classList.contains("step-form")) return;
  let note = form.querySelector(".saving");
  if (!note) {
    note = document.createElement("p");
    note.className = "saving";
    note.setAttribute("role", "status");
    form.appendChild(note);
  }
  note.textContent = "Saving…";
});

// The done / screen-out page of a study with [platform] redirect_after_s: back to the platform,
// unless the participant asks to stay (a time limit they can turn off: WCAG 2.2.1).
const auto = document.getElementById("handoff-auto");
if (auto) {
  const timer = setTimeout(() => document.getElementById("handoff")?.click(), 1000 * (+auto.dataset.seconds || 0));
  document.getElementById("handoff-stay")?.addEventListener("click", () => {
    clearTimeout(timer);
    auto.textContent = "You stay on this page. Use the button above when you are ready.";
  });
}

/** A box that scrolls inside (an answer being rated, the post-task page's answers) and the line
 *  under it, ``hint``, that says so, as many systems hide scroll bars (macOS, phones): the line is
 *  shown where the content is taller than the box, its text visible while the end is out of
 *  view (scrolled to the end, the text goes and its place stays, so nothing below moves). Returns the update, for
 *  a page that changes the box's content. */
export function watchMore(box, hint) {
  const update = () => {
    hint.hidden = !(box.scrollHeight > box.clientHeight + 2);
    hint.classList.toggle("done", box.scrollTop + box.clientHeight >= box.scrollHeight - 2);
  };
  box.addEventListener("scroll", update, { passive: true });
  addEventListener("resize", update); // a narrower window, a zoom: the content may no longer fit
  update();
  return update;
}

for (const box of document.querySelectorAll("[data-more]")) {
  const hint = document.getElementById(box.dataset.more);
  if (hint) watchMore(box, hint);
}
