// Face Lab playground: a chat with the bot core. Chosen photos are previewed by the server (it reads
// every format the engine does, HEIC included); a try-on goes up as one form post; the conversation
// (your try-ons, the bot's texts and results, "working" and busy states) comes back in order over one
// Server-Sent Events stream, which replays the whole conversation to a reloaded page.
"use strict";

const log = document.getElementById("log");
const form = document.getElementById("composer");
const submit = document.getElementById("submit");
const lookSelect = document.getElementById("look");
const strength = document.getElementById("strength");
const strengthValue = document.getElementById("strength-value");
const fullLook = document.getElementById("full-look");
const resultTemplate = document.getElementById("result-template");
const roles = ["selfie", "reference"];
const slots = Object.fromEntries(roles.map((role) => [role, document.getElementById(`${role}-slot`)]));
const slotErrors = Object.fromEntries(roles.map((role) => [role, document.getElementById(`${role}-error`)]));
const subjects = { selfie: "Your selfie", reference: "The reference photo" };
const chosen = { selfie: null, reference: null }; // {file, name}: the photo and its server preview's name
const choosing = { selfie: 0, reference: 0 }; // newest choice per slot, so a slow older preview is ignored
const selfieOf = new Map(); // try-on id -> URL of its selfie's preview (the "before")
const SPLIT_STEP = 5; // percent the before/after line moves per arrow key
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");
let working = null;
let busy = false; // the session has a try-on queued or running (told by the server's state events)
let awaitingState = false; // a try-on or button was posted; its state event has not arrived yet

function scrollToEnd(item) {
  item.scrollIntoView({ behavior: reducedMotion.matches ? "auto" : "smooth", block: "end" });
}

function addBubble(who, content, extraClass) {
  const item = document.createElement("li");
  item.className = extraClass ? `${who} ${extraClass}` : who;
  item.append(content);
  log.append(item);
  scrollToEnd(item);
  return item;
}

function textOf(value) {
  const text = document.createElement("p");
  text.className = "text";
  text.textContent = value;
  return text;
}

function showError(text) {
  addBubble("bot", textOf(text), "error");
}

function stopWorking() {
  if (working) working.remove();
  working = null;
}

async function post(path, body) {
  const response = await fetch(path, { method: "POST", body, credentials: "same-origin" });
  const reply = await response.json().catch(() => ({}));
  return { ok: response.ok, reply };
}

async function postOrSay(path, body) {
  const { ok, reply } = await post(path, body);
  if (!ok) showError(reply.error || "Something went wrong. Please try again.");
  return ok;
}

function buttonRow(buttons, tryon) {
  return buttons.map((button) => {
    const element = document.createElement("button");
    element.type = "button";
    element.textContent = button.label;
    element.addEventListener("click", async () => {
      awaitingState = true;
      updateSubmit();
      if (!(await postOrSay("api/button", JSON.stringify({ data: button.data, tryon })))) awaitingState = false;
      updateSubmit();
    });
    return element;
  });
}

function showText(event) {
  const item = addBubble("bot", textOf(event.text || ""));
  if (event.buttons.length) {
    const actions = document.createElement("div");
    actions.className = "actions";
    actions.append(...buttonRow(event.buttons, event.tryon));
    item.append(actions);
  }
}

function showUser(event) {
  const figure = document.createElement("div");
  figure.className = "pair";
  for (const role of roles) {
    if (role === "reference" && event.look) {
      const label = document.createElement("span");
      label.textContent = `look: ${event.look}`;
      figure.append(label);
    } else if (event[role]) {
      const image = document.createElement("img");
      image.src = event[role];
      image.alt = role === "selfie" ? "your selfie" : "makeup reference";
      figure.append(image);
    }
  }
  if (event.strength !== null) {
    const note = document.createElement("span");
    note.textContent = `strength ${event.strength}${event.mode === "full" ? ", full look" : ""}`;
    figure.append(note);
  }
  if (event.selfie) selfieOf.set(event.tryon, event.selfie);
  addBubble("user", figure);
}

function moveSplit(item, split) {
  item.querySelector(".compare").style.setProperty("--split", `${split.value}%`);
  item.querySelector(".before-clip").style.clipPath = `inset(0 ${100 - split.value}% 0 0)`;
}

// The picture leaves room for this result's own caption and buttons (their rows vary with the
// buttons and the width), so the whole result fits between the window's top and the composer.
function fitInView(item) {
  const picture = item.querySelector(".compare");
  const margins = 2 * parseFloat(getComputedStyle(document.documentElement).fontSize);
  item.style.setProperty("--result-chrome", `${item.offsetHeight - picture.offsetHeight + margins}px`);
}

function showResult(event) {
  const item = resultTemplate.content.firstElementChild.cloneNode(true);
  item.querySelector(".caption").textContent = event.text;
  const compare = item.querySelector(".compare");
  const after = item.querySelector("img.after");
  const before = item.querySelector("img.before");
  const split = item.querySelector(".split");
  compare.classList.add("single");
  split.addEventListener("input", () => moveSplit(item, split));
  split.addEventListener("keydown", (key) => {
    const direction = { ArrowLeft: -1, ArrowDown: -1, ArrowRight: 1, ArrowUp: 1 }[key.key];
    if (!direction) return;
    key.preventDefault(); // the range's own step (1 %) is too fine to see
    split.value = Math.min(100, Math.max(0, Number(split.value) + direction * SPLIT_STEP));
    moveSplit(item, split);
  });
  // The slider shows only when the "before" has the result's shape (not e.g. a side-by-side picture).
  const offerSlider = () => {
    const ratio = (image) => image.naturalWidth / image.naturalHeight;
    if (before.naturalWidth && Math.abs(ratio(before) / ratio(after) - 1) < 0.01) compare.classList.remove("single");
  };
  after.addEventListener("load", () => {
    fitInView(item);
    scrollToEnd(item);
    if (before.complete) offerSlider();
  }, { once: true });
  before.addEventListener("load", () => { if (after.complete) offerSlider(); }, { once: true });
  after.addEventListener("error", () => compare.replaceWith(textOf("This picture has expired.")), { once: true });
  const selfie = selfieOf.get(event.tryon);
  if (selfie) before.src = selfie;
  after.src = event.image;
  const download = item.querySelector("a.download");
  download.href = event.image;
  download.download = event.filename;
  item.querySelector(".actions").append(...buttonRow(event.buttons, event.tryon));
  log.append(item);
}

function clearConversation() {
  for (const item of [...log.children]) if (!item.classList.contains("intro")) item.remove();
  working = null;
  selfieOf.clear();
  for (const role of roles) clearSlot(role);
}

function listen() {
  const events = new EventSource("api/events");
  events.addEventListener("user", (message) => showUser(JSON.parse(message.data)));
  events.addEventListener("message", (message) => {
    stopWorking();
    const event = JSON.parse(message.data);
    if (event.image) showResult(event);
    else showText(event);
  });
  events.addEventListener("working", () => {
    if (!working) working = addBubble("bot", textOf("Working on it…"), "pending");
  });
  events.addEventListener("state", (message) => {
    busy = JSON.parse(message.data).busy;
    awaitingState = false;
    if (!busy) stopWorking();
    updateSubmit();
  });
  events.addEventListener("reset", clearConversation);
}

function showSlotError(role, text) {
  slotErrors[role].textContent = text;
  slotErrors[role].hidden = !text;
  slots[role].classList.toggle("invalid", Boolean(text));
}

function clearSlot(role) {
  chosen[role] = null;
  choosing[role] += 1;
  slots[role].classList.remove("filled", "loading");
  slots[role].querySelector("img").removeAttribute("src");
  slots[role].querySelector("input").value = "";
  showSlotError(role, "");
  updateSubmit();
}

async function choose(role, file) {
  if (!file) return;
  clearSlot(role);
  if (file.size === 0) {
    showSlotError(role, `${file.name} is an empty file (0 bytes). Please choose the photo again.`);
    return;
  }
  const choice = choosing[role];
  slots[role].classList.add("loading");
  const body = new FormData();
  body.append("role", role);
  body.append("photo", file, file.name);
  const { ok, reply } = await post("api/preview", body).catch(() => ({ ok: false, reply: {} }));
  if (choice !== choosing[role]) return; // another photo was chosen meanwhile
  slots[role].classList.remove("loading");
  if (!ok) {
    showSlotError(role, reply.error || `${subjects[role]} could not be sent. Please try again.`);
    return;
  }
  chosen[role] = { file, name: reply.name };
  slots[role].querySelector("img").src = reply.image;
  slots[role].classList.add("filled");
  updateSubmit();
}

function updateSubmit() {
  const usesLook = lookSelect.value !== "";
  const running = busy || awaitingState;
  slots.reference.classList.toggle("disabled", usesLook);
  submit.disabled = running || !(chosen.selfie && (chosen.reference || usesLook));
  submit.classList.toggle("busy", running);
  submit.setAttribute("aria-busy", String(running));
  submit.textContent = running ? "Working…" : "Try it on";
}

async function tryOn(event) {
  event.preventDefault();
  if (submit.disabled) return;
  const body = new FormData();
  body.append("selfie", chosen.selfie.file, chosen.selfie.file.name);
  body.append("selfie_preview", chosen.selfie.name);
  if (lookSelect.value) body.append("look", lookSelect.value);
  else {
    body.append("reference", chosen.reference.file, chosen.reference.file.name);
    body.append("reference_preview", chosen.reference.name);
  }
  body.append("strength", strength.value);
  body.append("mode", fullLook.checked ? "full" : "natural");
  body.append("tryon", crypto.randomUUID());
  awaitingState = true; // one try-on per click: the button stays off until the server says otherwise
  updateSubmit();
  if (!(await postOrSay("api/tryon", body))) {
    awaitingState = false;
    updateSubmit();
  }
}

async function loadSettings() {
  const settings = await (await fetch("api/settings", { credentials: "same-origin" })).json();
  strength.value = settings.strength;
  strengthValue.textContent = strength.value;
}

// One save at a time, the latest value last: arrow keys fire a change per step, and parallel posts
// could reach the database out of order.
let saving = null;
async function saveStrength() {
  if (saving) return;
  saving = Number(strength.value);
  await postOrSay("api/strength", JSON.stringify({ strength: saving }));
  const saved = saving;
  saving = null;
  if (Number(strength.value) !== saved) saveStrength();
}

async function forgetMe() {
  if (!window.confirm("Delete your photos, results, strength and try-on records?")) return;
  if (await postOrSay("api/command", JSON.stringify({ command: "forget" }))) await loadSettings();
}

for (const [role, slot] of Object.entries(slots)) {
  const input = slot.querySelector("input");
  input.addEventListener("change", () => choose(role, input.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    slot.addEventListener(type, (event) => { event.preventDefault(); slot.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) slot.addEventListener(type, () => slot.classList.remove("over"));
  slot.addEventListener("drop", (event) => { event.preventDefault(); choose(role, event.dataTransfer.files[0]); });
}
for (const button of document.querySelectorAll("[data-command]")) {
  button.addEventListener("click", () => postOrSay("api/command", JSON.stringify({ command: button.dataset.command })));
}
document.getElementById("forget").addEventListener("click", forgetMe);
strength.addEventListener("input", () => { strengthValue.textContent = strength.value; });
strength.addEventListener("change", saveStrength);
lookSelect.addEventListener("change", updateSubmit);
form.addEventListener("submit", tryOn);
// The result must end above the sticky composer: scrolling and the result's height both leave it room.
new ResizeObserver(() => {
  document.documentElement.style.setProperty("--composer-h", `${form.offsetHeight}px`);
}).observe(form);

fetch("api/looks").then((response) => response.json()).then(({ looks }) => {
  // The menu names each look as the result's caption and the chats' /look do.
  for (const look of looks) lookSelect.add(new Option(look, look));
});
loadSettings();
listen();
