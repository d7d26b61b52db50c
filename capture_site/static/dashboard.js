// Live progress on a study's dashboard page: polls progress.json every 5 s and redraws the
// counters and the participants table (built with textContent only: no HTML from the data).
const section = document.getElementById("progress");
const table = document.getElementById("participants");

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

const dash = (v) => (v === null || v === undefined || v === "" ? "–" : String(v));

function row(p) {
  const tr = document.createElement("tr");
  tr.dataset.id = p.id;
  const first = document.createElement("td");
  const code = document.createElement("code");
  code.textContent = p.pseudonym;
  first.appendChild(code);
  if (table.dataset.plots && p.consent) {
    const a = document.createElement("a");
    a.href = table.dataset.plots.replace("__P__", encodeURIComponent(p.pseudonym));
    a.textContent = "plots";
    first.append(" ", a);
  }
  tr.appendChild(first);
  cell(tr, dash(p.platform));
  cell(tr, p.status, `status-${p.status.replace(/ /g, "-")}`);
  cell(tr, p.reason || "");
  cell(tr, p.step_label);
  cell(tr, dash(p.started_at));
  cell(tr, dash(p.duration));
  cell(tr, String(p.turns));
  cell(tr, Object.entries(p.samples || {}).map(([k, v]) => `${k} ${v}`).join(" · ") || "–");
  cell(tr, typeof p.sample_rate_hz === "number" ? p.sample_rate_hz.toFixed(1) : "–");
  // without mouse samples there are no gaps to count: "–", not a perfect-looking 0
  cell(tr, p.mouse_samples ? String(p.gaps) : "–");
  cell(tr, p.mouse_samples ? Number(p.max_gap_s).toFixed(1) : "–");
  cell(tr, p.face_found_rate === null || p.face_found_rate === undefined ? "–" : `${Math.round(p.face_found_rate * 100)}%`);
  cell(tr, dash(p.calibration)).dataset.key = "calibration";
  cell(tr, String(p.attention_failed));
  const last = document.createElement("td");
  if (p.status !== "withdrawn") { // a withdrawal's marker stays: nothing to delete, never readmitted
    const form = document.createElement("form");
    form.method = "post";
    form.action = table.dataset.delete.replace(/\/0\/delete$/, `/${p.id}/delete`);
    form.className = "inline delete-form";
    form.dataset.pseudonym = p.pseudonym;
    const token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrf_token";
    token.value = table.dataset.csrf;
    const button = document.createElement("button");
    button.type = "submit";
    form.append(token);
    if (p.status === "deleted") { // the marker of a deletion: the researcher may let the id start again
      form.dataset.readmit = "1";
      const readmit = document.createElement("input");
      readmit.type = "hidden";
      readmit.name = "readmit";
      readmit.value = "1";
      form.append(readmit);
      button.textContent = "Allow to start again";
    } else {
      button.className = "danger";
      button.textContent = "Delete data";
    }
    form.append(button);
    last.appendChild(form);
  }
  tr.appendChild(last);
  return tr;
}

// Redraw in place: rows whose data did not change stay as they are (a text selection in them
// survives), changed rows are replaced, rows are put in the server's order (one that is already in
// its place is not moved), and a link or button that had the keyboard focus in a replaced or moved
// row gets it back (else every poll would send a keyboard user back to the page's top).
// An empty study shows one "No participants yet" row (no data-id), kept until the first arrives.
function emptyRow() {
  const tr = document.createElement("tr");
  tr.className = "empty";
  cell(tr, "No participants yet (the table refreshes every 5 s).").colSpan = table.tHead.rows[0].cells.length;
  return tr;
}

function redraw(body, participants) {
  const active = document.activeElement;
  const focusRow = active && body.contains(active) ? active.closest("tr") : null;
  const focusAt = focusRow ? [...focusRow.querySelectorAll("a, button")].indexOf(active) : -1;
  const old = new Map(); // data-id -> the row shown now
  for (const tr of [...body.rows]) {
    if (!tr.classList.contains("empty")) old.set(tr.dataset.id, tr);
    else if (participants.length) tr.remove();
  }
  const rows = new Map(); // data-id -> its row, in the server's order
  for (const p of participants) {
    const id = String(p.id);
    const key = JSON.stringify(p);
    let tr = old.get(id);
    old.delete(id);
    if (!tr || tr.dataset.key !== key) {
      if (tr) tr.remove();
      tr = row(p);
      tr.dataset.key = key;
    }
    rows.set(id, tr);
  }
  for (const tr of old.values()) tr.remove(); // no longer listed
  let next = body.firstElementChild;
  for (const tr of rows.values()) {
    if (tr === next) next = next.nextElementSibling;
    else body.insertBefore(tr, next);
  }
  if (!participants.length && !body.querySelector("tr.empty")) body.appendChild(emptyRow());
  if (focusRow && focusAt >= 0 && document.activeElement !== active) {
    const tr = rows.get(focusRow.dataset.id);
    const target = tr && tr.querySelectorAll("a, button")[focusAt];
    if (target) target.focus();
  }
}

let timer = null;

// The login ended (12 h after it, a logout in another tab, the account deleted): progress.json
// is answered by the login page. Said once, and the polls stop (they showed the last numbers as
// if they were current).
function loggedOut() {
  clearInterval(timer);
  noteAbove("logged-out", "alert").textContent =
    "Your login has ended: the figures below are no longer updated. Reload the page to log in again.";
}

/** The note ``id`` above the figures (made once, with the live-region ``role``). */
function noteAbove(id, role) {
  let note = document.getElementById(id);
  if (!note) {
    note = document.createElement("p");
    note.id = id;
    note.className = "flash";
    note.setAttribute("role", role);
    section.prepend(note);
  }
  return note;
}

// A poll that got no figures (the database or the server unreachable, the network down): the
// figures stay, and a note says since when they have not been updated (without it they read as
// current); the next poll that gets figures takes the note away.
let updatedAt = new Date();
function notUpdated(why) {
  const hhmm = updatedAt.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  noteAbove("not-updated", "status").textContent =
    `${why}: the figures below are as of ${hhmm}; they are updated again when it answers.`;
}

async function poll() {
  let resp;
  try {
    resp = await fetch(section.dataset.url, { headers: { Accept: "application/json" } });
  } catch {
    notUpdated("The site cannot be reached");
    return;
  }
  if (resp.redirected || (resp.ok && !(resp.headers.get("Content-Type") || "").includes("json"))) {
    loggedOut();
    return;
  }
  if (!resp.ok) {
    notUpdated(resp.status === 503 ? "The study's database cannot be reached right now"
                                   : `The site answered ${resp.status}`);
    return;
  }
  try {
    const { progress, participants } = await resp.json();
    const rates = progress.samples_per_s || {};
    const values = { ...progress, mouse_rate: rates.mouse || 0, gaze_rate: rates.gaze || 0 };
    for (const dd of section.querySelectorAll("[data-key]")) dd.textContent = String(values[dd.dataset.key] ?? "");
    if (table && Array.isArray(participants)) redraw(table.tBodies[0], participants);
  } catch {
    notUpdated("The site's answer could not be read");
    return;
  }
  updatedAt = new Date();
  const note = document.getElementById("not-updated");
  if (note) note.remove();
}

if (section) timer = setInterval(poll, 5000);
// one listener for the delete buttons, also of rows redrawn later
document.addEventListener("submit", (e) => {
  if (!(e.target.classList && e.target.classList.contains("delete-form"))) return;
  const who = e.target.dataset.pseudonym || "";
  const question = e.target.dataset.readmit
    ? `Let the platform id of participant ${who} start the study again as a new participant?`
    : `Delete all data of participant ${who}? This cannot be undone.`;
  if (!confirm(question)) {
    e.preventDefault();
  }
});
