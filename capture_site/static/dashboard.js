// Live progress on a study's dashboard page: polls progress.json every 5 s.
const section = document.getElementById("progress");
async function poll() {
  try {
    const resp = await fetch(section.dataset.url, { headers: { Accept: "application/json" } });
    if (!resp.ok) return;
    const { progress } = await resp.json();
    const values = { ...progress, mouse_rate: (progress.samples_per_s || {}).mouse || 0 };
    for (const dd of section.querySelectorAll("[data-key]")) dd.textContent = String(values[dd.dataset.key] ?? "");
  } catch { /* offline: try again later */ }
}
if (section) setInterval(poll, 5000);
for (const form of document.querySelectorAll(".delete-form")) {
  form.addEventListener("submit", (e) => {
    if (!confirm("Delete all data of this participant? This cannot be undone.")) e.preventDefault();
  });
}
