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
  cell(tr, p.step);
  cell(tr, dash(p.started_at));
  cell(tr, dash(p.duration));
  cell(tr, String(p.turns));
  cell(tr, Object.entries(p.samples || {}).map(([k, v]) => `${k} ${v}`).join(" · ") || "–");
  cell(tr, dash(p.sample_rate_hz));
  cell(tr, String(p.gaps));
  cell(tr, String(p.max_gap_s));
  cell(tr, p.face_found_rate === null || p.face_found_rate === undefined ? "–" : `${Math.round(p.face_found_rate * 100)}%`);
  cell(tr, dash(p.calibration)).dataset.key = "calibration";
  cell(tr, String(p.attention_failed));
  const last = document.createElement("td");
  const form = document.createElement("form");
  form.method = "post";
  form.action = table.dataset.delete.replace(/\/0\/delete$/, `/${p.id}/delete`);
  form.className = "inline delete-form";
  const token = document.createElement("input");
  token.type = "hidden";
  token.name = "csrf_token";
  token.value = table.dataset.csrf;
  const button = document.createElement("button");
  button.type = "submit";
  button.className = "danger";
  button.textContent = "Delete data";
  form.append(token, button);
  last.appendChild(form);
  tr.appendChild(last);
  return tr;
}

async function poll() {
  try {
    const resp = await fetch(section.dataset.url, { headers: { Accept: "application/json" } });
    if (!resp.ok) return;
    const { progress, participants } = await resp.json();
    const values = { ...progress, mouse_rate: (progress.samples_per_s || {}).mouse || 0 };
    for (const dd of section.querySelectorAll("[data-key]")) dd.textContent = String(values[dd.dataset.key] ?? "");
    if (table && Array.isArray(participants)) {
      const body = table.tBodies[0];
      body.replaceChildren(...participants.map(row));
    }
  } catch { /* offline: try again later */ }
}

if (section) setInterval(poll, 5000);
// one listener for the delete buttons, also of rows redrawn later
document.addEventListener("submit", (e) => {
  if (e.target.classList && e.target.classList.contains("delete-form")
      && !confirm("Delete all data of this participant? This cannot be undone.")) e.preventDefault();
});
