// The chat task page: send messages, show the response(s), collect the ratings of each turn.
//
// A turn must be rated before the next message. A failed send (the model did not answer) keeps
// the message and offers "Try again"; the draft also survives a reload (localStorage) until its
// turn is stored (then it is gone, also where the reply was lost on the way), and so do
// the ratings and comment chosen for a turn but not yet submitted (per turn, cleared on submit).

import { leaveRefused } from "./outbox.js";
import { Recorder } from "./telemetry.js";
import { renderAnswer } from "./layout.js";
import { watchMore } from "./page.js";

const data = JSON.parse(document.getElementById("page-data").textContent);
const $ = (sel) => document.querySelector(sel);
const pairwise = data.kind === "pairwise";
const positions = pairwise ? [0, 1] : [0];
const draftKey = `gazepref:draft:${data.task}`;
const ratingKey = (index) => `gazepref:rating:${data.task}:${index}`; // a turn's unsubmitted rating

const ui = {
  history: $("#history"), current: $("#current"), prompt: $("#current-prompt"),
  panes: positions.map((p) => $(`#response-${p}`)), more: positions.map((p) => $(`#response-${p}-more`)), rating: $("#rating"), ratingError: $("#rating-error"),
  composer: $("#composer"), message: $("#message"), send: $("#send"), retry: $("#retry"),
  waiting: $("#waiting"), sendError: $("#send-error"), finish: $("#finish"), rated: $("#rated-count"),
  compare: $("#compare"), limit: $("#turn-limit"), finishHint: $("#finish-hint"),
};

const ENDED = "Your session has ended. Please reload the page or open the study link again.";

let turns = data.turns;
let current = null; // the turn being rated
let tShown = null;

const recorder = new Recorder({
  task: data.task, token: data.token, ingestUrl: data.urls.ingest, nextSeq: data.next_seq,
  targets: () => ({ prompt: ui.prompt, "response:0": ui.panes[0], "response:1": ui.panes[1],
                    controls: ui.rating, composer: ui.composer }),
  panes: () => Object.fromEntries(positions.map((p) => [`response:${p}`, ui.panes[p]])),
  turn: () => (current ? current.index : null),
  onRefused: () => refused(),
});

let ending = false;
/** The server no longer knows the participant (they withdrew in another window, or their data was
 *  deleted), as the telemetry's or the gaze's next batch finds: both stop recording (the camera let
 *  go at once) and the page is loaded again (the withdrawn page); where it is not (it just was, or
 *  the browser keeps no session storage), the page says so above the task. */
function refused() {
  if (ending) return;
  ending = true;
  recorder.refused();
  if (window.gazepref && window.gazepref.gaze) window.gazepref.gaze.refused();
  if (leaveRefused()) return;
  // above everything: a window behind the "another window" notice has its task inert under it
  const notice = document.getElementById("other-window");
  if (notice) notice.hidden = true;
  const main = document.querySelector("main");
  main.inert = false;
  const note = document.createElement("p");
  note.className = "form-error";
  note.id = "session-ended";
  note.setAttribute("role", "alert");
  note.textContent = ENDED;
  main.prepend(note);
}

async function api(url, body) {
  const resp = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Participant-Token": data.token },
    body: JSON.stringify(body),
  });
  let payload = {};
  try { payload = await resp.json(); } catch { /* not JSON */ }
  return { ok: resp.ok, status: resp.status, payload };
}

function addHistory(turn) {
  const item = document.createElement("div");
  item.className = "history-turn";
  const you = document.createElement("p");
  you.className = "user-message";
  you.textContent = turn.prompt;
  const kept = turn.responses[pairwise && turn.choice !== null ? turn.choice : 0];
  const answer = document.createElement("div");
  answer.className = `assistant-message collapsed ${typeof kept.html === "string" ? "markdown" : "plain"}`;
  renderAnswer(answer, kept);
  item.append(you, answer);
  ui.history.appendChild(item);
  if (answer.scrollHeight > answer.clientHeight + 2) { // long answers: collapsed, with a toggle
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "expand";
    toggle.textContent = "Show the whole answer";
    toggle.setAttribute("aria-expanded", "false");
    toggle.addEventListener("click", () => {
      const open = answer.classList.toggle("collapsed") === false;
      toggle.textContent = open ? "Show less" : "Show the whole answer";
      toggle.setAttribute("aria-expanded", String(open));
      recorder.event(open ? "expand" : "collapse", "history", `turn=${turn.index}`);
    });
    item.appendChild(toggle);
  } else {
    answer.classList.remove("collapsed");
  }
}

// "Scroll this answer to read the rest" under each answer box taller than it (page.js watchMore)
// (a page drawn by the previous release's cached template has none: a site upgraded in place)
const moreLines = ui.panes.flatMap((pane, i) => (ui.more[i] ? [watchMore(pane, ui.more[i])] : []));
const markMore = () => moreLines.forEach((update) => update());

function ratedCount() {
  return turns.filter((t) => t.rated).length;
}

function refresh() {
  const rated = ratedCount();
  ui.rated.textContent = String(rated);
  ui.finish.disabled = rated < data.min_turns || current !== null;
  // why Finish is greyed out (the counter at the top is out of sight after a few turns)
  const more = data.min_turns - rated;
  const why = more > 0 ? `Rate ${more} more turn${more === 1 ? "" : "s"} to finish this task.`
    : current !== null ? "Submit your rating of this turn, then you can finish this task." : "";
  if (ui.finishHint) { // (not on a page of the previous release's template)
    if (ui.finishHint.textContent !== why) ui.finishHint.textContent = why; // a live region: only a change is news
    ui.finishHint.hidden = !why;
  }
  const canSend = current === null && turns.length < data.max_turns;
  ui.composer.hidden = !canSend;
  ui.limit.hidden = current !== null || turns.length < data.max_turns; // why the composer is gone
  ui.current.hidden = current === null;
}

function showCurrent(turn) {
  current = turn;
  ui.prompt.textContent = turn.prompt;
  ui.rating.reset();
  restoreRating(turn.index);
  ui.ratingError.hidden = true;
  if (ui.compare) ui.compare.hidden = !(data.ratings.compare && turn.index > 0);
  refresh();
  turn.responses.forEach((r, i) => renderAnswer(ui.panes[i], r));
  markMore();
  tShown = performance.now();
  recorder.event("shown", "window", `turn=${turn.index}`);
  recorder.scheduleLayout(true);
  ui.current.scrollIntoView({ block: "start" });
  // the message box was disabled while sending, then hidden: a keyboard or screen-reader user
  // goes on at the (first) answer, not at the top of the page
  if (!document.activeElement || document.activeElement === document.body) ui.panes[0].focus({ preventScroll: true });
}

/** Keep the rating form's answers of the current turn (a reload must not lose them). */
function keepRating() {
  if (!current) return;
  const answers = [...new FormData(ui.rating).entries()].filter(([, v]) => v !== "");
  if (answers.length) localStorage.setItem(ratingKey(current.index), JSON.stringify(answers));
  else localStorage.removeItem(ratingKey(current.index));
}

/** Put back what was chosen for turn ``index`` before a reload. */
function restoreRating(index) {
  let answers;
  try { answers = JSON.parse(localStorage.getItem(ratingKey(index)) || "[]"); } catch { answers = []; }
  if (!Array.isArray(answers)) return;
  for (const [name, value] of answers) {
    for (const el of ui.rating.elements) {
      if (el.name !== name) continue;
      if (el.type === "radio") el.checked = el.value === value;
      else el.value = value;
    }
  }
}

function setSending(busy) {
  ui.send.disabled = busy;
  ui.message.disabled = busy;
  ui.waiting.hidden = !busy;
}

/** The API's answer to a page that is out of date (another tab went on, Back/Forward): reload. */
function reloadIfStale(result) {
  if (!result.payload.reload) return false;
  setTimeout(() => location.reload(), 1500);
  return true;
}

/** A message for the participant from a failed request. */
function problem(result, fallback) {
  if (result.status === 401 || result.status === 403) return ENDED;
  return result.payload.error || fallback;
}

/** How long a page waits for a message the models are answering for another request (ms): longer
 *  than the server's lease (turn_leases.LEASE_S, 180 s), after which it gives up and offers Try again. */
const ANSWER_WAIT_MS = 200000;

async function sendTurn(body) {
  try {
    return await api(data.urls.turns, body);
  } catch {
    return { ok: false, status: 0, payload: { error: "The connection dropped. Please try again." } };
  }
}

async function send() {
  const prompt = ui.message.value.trim();
  if (!prompt) {
    ui.sendError.textContent = "Please write a message first.";
    ui.sendError.hidden = false;
    ui.message.focus();
    return;
  }
  localStorage.setItem(draftKey, prompt);
  ui.sendError.hidden = true;
  ui.retry.hidden = true;
  setSending(true);
  recorder.event("submit", "composer", `turn=${turns.length}`);
  const body = { index: turns.length, prompt };
  let result = await sendTurn(body);
  // the models are answering this message for another request of this page's (sent before a
  // reload, a copy): the same message again every few seconds, which calls no model and, once
  // that answer is stored, gets it (capture_site/turn_leases.py)
  for (const until = Date.now() + ANSWER_WAIT_MS; !result.ok && result.payload.answering && Date.now() < until;) {
    await new Promise((done) => setTimeout(done, 2000));
    result = await sendTurn(body);
  }
  setSending(false);
  if (!result.ok) {
    // another tab's message was stored as this turn meanwhile (that tab's success cleared the
    // draft both share): this page's text is kept for the page the reload brings
    if (result.payload.reload) localStorage.setItem(draftKey, prompt);
    ui.sendError.textContent = problem(result, "Sending failed. Please try again.");
    ui.sendError.hidden = false;
    ui.retry.hidden = !(result.status === 0 || result.status >= 500 || result.payload.retry);
    if (reloadIfStale(result)) { ui.send.disabled = true; ui.retry.hidden = true; }
    (ui.retry.hidden ? ui.message : ui.retry).focus(); // the message box was disabled: focus was lost
    return;
  }
  localStorage.removeItem(draftKey);
  ui.message.value = "";
  turns = turns.concat([result.payload.turn]);
  showCurrent(result.payload.turn);
}

function readRating() {
  const form = new FormData(ui.rating);
  const body = { origin: performance.timeOrigin, t_shown: tShown, t_decided: performance.now() };
  if (data.ratings.likert) {
    body.likert = positions.map((p) => (form.get(`likert-${p}`) ? +form.get(`likert-${p}`) : null));
    if (body.likert.includes(null)) return [null, pairwise ? "Please rate both answers from 1 to 5." : "Please rate the answer from 1 to 5."];
  }
  if (pairwise) {
    if (!form.get("choice")) return [null, "Please choose the answer you prefer."];
    body.choice = +form.get("choice");
    if (form.get("strength")) body.strength = +form.get("strength");
  } else if (data.ratings.compare && current.index > 0) {
    if (!form.get("better")) return [null, "Please say whether this answer is better or worse than the previous one."];
    body.better = form.get("better") === "1";
  }
  const feedback = (form.get("feedback") || "").trim();
  if (data.ratings.free_text === "required" && !feedback) return [null, "Please write a short comment."];
  if (feedback) body.feedback = feedback;
  return [body, null];
}

async function submitRating(e) {
  e.preventDefault();
  const [body, invalid] = readRating();
  if (invalid) {
    ui.ratingError.textContent = invalid;
    ui.ratingError.hidden = false;
    return;
  }
  ui.ratingError.hidden = true;
  $("#submit-rating").disabled = true;
  $("#rating-saving").hidden = false; // a slow connection otherwise looks stuck
  recorder.event("submit", "controls", `rating turn=${current.index}`);
  let result;
  try {
    result = await api(`${data.urls.turns}/${current.index}/rating`, body);
  } catch {
    result = { ok: false, status: 0, payload: { error: "The connection dropped. Please submit again." } };
  }
  $("#submit-rating").disabled = false;
  $("#rating-saving").hidden = true;
  if (!result.ok) {
    ui.ratingError.textContent = problem(result, "Saving failed. Please submit again.");
    ui.ratingError.hidden = false;
    reloadIfStale(result);
    return;
  }
  const turn = result.payload.turn;
  localStorage.removeItem(ratingKey(turn.index));
  turns[turn.index] = turn;
  addHistory(turn);
  current = null;
  ui.panes.forEach((p) => p.replaceChildren());
  markMore();
  refresh();
  recorder.scheduleLayout(false);
  ui.message.focus();
}

ui.rating.addEventListener("change", (e) => {
  const input = e.target;
  if (input.name.startsWith("likert-")) recorder.event("rate", `response:${input.name.slice(7)}`, input.value);
  else if (input.name === "choice") recorder.event("choose", `response:${input.value}`, input.value === "0" ? "left" : "right");
  else if (input.name === "better") recorder.event("compare", "response:0", input.value === "1" ? "better" : "worse");
});
ui.rating.addEventListener("change", keepRating);
ui.rating.addEventListener("input", keepRating); // the comment, as it is typed
ui.composer.addEventListener("submit", (e) => { e.preventDefault(); send(); });
ui.retry.addEventListener("click", () => send());
ui.rating.addEventListener("submit", submitRating);
ui.message.addEventListener("input", () => {
  if (ui.message.value.trim()) ui.sendError.hidden = true;
  if (ui.message.value) localStorage.setItem(draftKey, ui.message.value); // a reload keeps what was typed
  else localStorage.removeItem(draftKey);
});
ui.message.addEventListener("keydown", (e) => {
  // not while an input method composes a word (Chinese, Japanese, ...): its Enter picks the word
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
});
ui.finish.closest("form").addEventListener("submit", (e) => {
  recorder.event("submit", "window", "finish");
  recorder.flush();
  const gaze = window.gazepref.gaze;
  if (gaze && !e.target.dataset.flushed) { // the last webcam frames first (at most ~6 s), then go on
    e.preventDefault();
    e.target.dataset.flushed = "1";
    ui.finish.disabled = true;
    Promise.race([gaze.flush(), new Promise((r) => setTimeout(r, 6000))]).finally(() => e.target.submit());
  }
});

// Resume: earlier turns go to the history; an unrated last turn is shown for rating again.
for (const t of turns) {
  if (t.rated) addHistory(t);
  else showCurrent(t);
}
// A draft that is the last stored turn's message was sent and answered, but the reply never
// reached the page that sent it (a reload, a dropped connection): it is not offered again.
const last = turns[turns.length - 1];
if (last && (localStorage.getItem(draftKey) || "").trim() === last.prompt) localStorage.removeItem(draftKey);
if (!ui.message.value) ui.message.value = localStorage.getItem(draftKey) || "";
ui.send.disabled = false; // buttons start disabled until this module runs
$("#submit-rating").disabled = false;
refresh();
// reloaded after Send while the models answer the message: the page waits for that answer, as
// the page that sent it did (the message is the draft kept at Send)
if (data.answering && !current && ui.message.value.trim()) send();
// the Finish hint as the page opens is no news: a live region only from now on (its changes are)
if (ui.finishHint) ui.finishHint.setAttribute("role", "status");
recorder.scheduleLayout(true);
window.gazepref = { recorder, state: () => ({ turns, current }), gaze: null };
if (data.gaze) { // webcam gaze for this participant (calibrated in the camera step)
  // the camera stopped, paused or came back (webcam.js): an events row, so a gaze gap says why
  addEventListener("gazepref:camera", (e) => recorder.event(e.detail));
  // one window of the participant records at a time: the others show a notice (webcam.js)
  import("./webcam.js").then((m) => m.startTaskGaze(data.gaze, {
    record: () => (ending ? Promise.resolve(null) : m.recordTaskGaze(data.gaze)), // (no camera once refused)
    onCapture: (c) => {
      window.gazepref.gaze = c;
      if (c) c.onRefused = refused; // (the page's: the telemetry stops too)
      if (c && ending) c.refused(); // (its camera came after the refusal)
    },
    onActive: (active) => recorder.setActive(active),
  }));
}
