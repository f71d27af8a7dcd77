// Face Lab playground: a chat with the bot core. A try-on goes up as one form post; the bot's answers
// (texts, results, "working" signals) come back in order over one Server-Sent Events stream.
"use strict";

const log = document.getElementById("log");
const form = document.getElementById("composer");
const submit = document.getElementById("submit");
const lookSelect = document.getElementById("look");
const strength = document.getElementById("strength");
const strengthValue = document.getElementById("strength-value");
const fullLook = document.getElementById("full-look");
const resultTemplate = document.getElementById("result-template");
const slots = { selfie: document.getElementById("selfie-slot"), reference: document.getElementById("reference-slot") };
const chosen = { selfie: null, reference: null };
const selfieOf = new Map(); // try-on id -> object URL of the selfie sent with it (the "before")
let working = null;

function scrollToEnd(item) {
  item.scrollIntoView({ behavior: "smooth", block: "end" });
}

function addBubble(who, content, extraClass) {
  const item = document.createElement("li");
  item.className = extraClass ? `${who} ${extraClass}` : who;
  item.append(content);
  log.append(item);
  scrollToEnd(item);
  return item;
}

function stopWorking() {
  if (working) working.remove();
  working = null;
}

async function post(path, body) {
  const response = await fetch(path, { method: "POST", body, credentials: "same-origin" });
  const reply = await response.json().catch(() => ({}));
  if (!response.ok) addBubble("bot", reply.error || "Something went wrong. Please try again.", "error");
  return reply;
}

function buttonRow(buttons, tryon) {
  return buttons.map((button) => {
    const element = document.createElement("button");
    element.type = "button";
    element.textContent = button.label;
    element.addEventListener("click", () => post("api/button", JSON.stringify({ data: button.data, tryon })));
    return element;
  });
}

function showText(event) {
  const text = document.createElement("p");
  text.className = "text";
  text.textContent = event.text || "";
  const item = addBubble("bot", text);
  if (event.buttons.length) {
    const actions = document.createElement("div");
    actions.className = "actions";
    actions.append(...buttonRow(event.buttons, event.tryon));
    item.append(actions);
  }
}

function showResult(event) {
  const item = resultTemplate.content.firstElementChild.cloneNode(true);
  item.querySelector(".caption").textContent = event.text;
  const compare = item.querySelector(".compare");
  const after = item.querySelector("img.after");
  const before = item.querySelector("img.before");
  const split = item.querySelector(".split");
  compare.classList.add("single");
  split.addEventListener("input", () => {
    compare.style.setProperty("--split", `${split.value}%`);
    item.querySelector(".before-clip").style.clipPath = `inset(0 ${100 - split.value}% 0 0)`;
  });
  // The slider shows only when the result is the selfie's size (not e.g. a side-by-side picture).
  const offerSlider = () => {
    if (before.naturalWidth === after.naturalWidth && before.naturalHeight === after.naturalHeight) {
      compare.classList.remove("single");
    }
  };
  after.addEventListener("load", () => { scrollToEnd(item); if (before.complete) offerSlider(); }, { once: true });
  before.addEventListener("load", () => { if (after.complete) offerSlider(); }, { once: true });
  const selfie = selfieOf.get(event.tryon);
  if (selfie) before.src = selfie;
  after.src = event.image;
  const download = item.querySelector("a.download");
  download.href = event.image;
  download.download = event.filename;
  item.querySelector(".actions").append(...buttonRow(event.buttons, event.tryon));
  log.append(item);
}

function listen() {
  const events = new EventSource("api/events");
  events.addEventListener("message", (message) => {
    stopWorking();
    const event = JSON.parse(message.data);
    if (event.image) showResult(event);
    else showText(event);
  });
  events.addEventListener("working", () => {
    if (!working) working = addBubble("bot", "Working on it…", "pending");
  });
}

function choose(role, file) {
  if (!file) return;
  if (!file.type.startsWith("image/")) {
    addBubble("bot", `${file.name} is not an image. Please choose a photo (JPEG, PNG or WebP).`, "error");
    return;
  }
  chosen[role] = file;
  const preview = slots[role].querySelector("img");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  slots[role].classList.add("filled");
  updateSubmit();
}

function updateSubmit() {
  const usesLook = lookSelect.value !== "";
  slots.reference.classList.toggle("disabled", usesLook);
  submit.disabled = !(chosen.selfie && (chosen.reference || usesLook));
}

function userBubble() {
  const figure = document.createElement("div");
  figure.className = "pair";
  for (const role of ["selfie", "reference"]) {
    if (role === "reference" && lookSelect.value) {
      const label = document.createElement("span");
      label.textContent = `look: ${lookSelect.value}`;
      figure.append(label);
      continue;
    }
    const image = document.createElement("img");
    image.src = URL.createObjectURL(chosen[role]);
    image.alt = role;
    figure.append(image);
  }
  const note = document.createElement("span");
  note.textContent = `strength ${strength.value}${fullLook.checked ? ", full look" : ""}`;
  figure.append(note);
  addBubble("user", figure);
}

async function tryOn(event) {
  event.preventDefault();
  const body = new FormData();
  body.append("selfie", chosen.selfie, chosen.selfie.name);
  if (lookSelect.value) body.append("look", lookSelect.value);
  else body.append("reference", chosen.reference, chosen.reference.name);
  body.append("strength", strength.value);
  body.append("mode", fullLook.checked ? "full" : "natural");
  const tryon = crypto.randomUUID();
  body.append("tryon", tryon);
  selfieOf.set(tryon, URL.createObjectURL(chosen.selfie));
  userBubble();
  await post("api/tryon", body);
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
  button.addEventListener("click", () => post("api/command", JSON.stringify({ command: button.dataset.command })));
}
strength.addEventListener("input", () => { strengthValue.textContent = strength.value; });
lookSelect.addEventListener("change", updateSubmit);
form.addEventListener("submit", tryOn);

fetch("api/looks").then((response) => response.json()).then(({ looks }) => {
  for (const look of looks) lookSelect.add(new Option(look.replace("_", " "), look));
});
listen();
