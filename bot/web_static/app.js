// Face Lab playground: a chat with the bot core. Photos and commands go up as plain HTTP posts; the
// bot's replies (texts and results) come back over one Server-Sent Events stream, in order.
"use strict";

const log = document.getElementById("log");
const drop = document.getElementById("drop");
const photoInput = document.getElementById("photo");
const dropHint = document.getElementById("drop-hint");
const lookSelect = document.getElementById("look");
const strength = document.getElementById("strength");
const strengthValue = document.getElementById("strength-value");
const resultTemplate = document.getElementById("result-template");

function addBubble(who, content, extraClass) {
  const item = document.createElement("li");
  item.className = extraClass ? `${who} ${extraClass}` : who;
  if (content instanceof Node) item.append(content);
  else item.textContent = content;
  log.append(item);
  item.scrollIntoView({ behavior: "smooth", block: "end" });
  return item;
}

async function post(path, body) {
  const response = await fetch(path, { method: "POST", body });
  if (!response.ok) {
    const reply = await response.json().catch(() => ({ error: response.statusText }));
    addBubble("bot", reply.error || "Something went wrong.", "error");
  }
}

function sendCommand(name, args = "") {
  return post("api/command", JSON.stringify({ command: name, args }));
}

function sendPhoto(file) {
  if (!file || !file.type.startsWith("image/")) {
    addBubble("bot", "That is not an image. Please send a photo (JPEG, PNG, WebP or HEIC).", "error");
    return;
  }
  const preview = document.createElement("img");
  preview.src = URL.createObjectURL(file);
  preview.alt = file.name;
  addBubble("user", preview);
  const form = new FormData();
  form.append("photo", file, file.name);
  post("api/photo", form);
}

function showResult(event) {
  const item = resultTemplate.content.firstElementChild.cloneNode(true);
  const compare = item.querySelector(".compare");
  item.querySelector("img.after").src = event.image;
  item.querySelector("img.before").src = event.before;
  const split = item.querySelector(".split");
  split.addEventListener("input", () => {
    compare.style.setProperty("--split", `${split.value}%`);
    item.querySelector(".before-clip").style.clipPath = `inset(0 ${100 - split.value}% 0 0)`;
  });
  const download = item.querySelector("a.download");
  download.href = event.image;
  download.download = event.filename;
  const actions = item.querySelector(".actions");
  for (const button of event.buttons) {
    const element = document.createElement("button");
    element.type = "button";
    element.textContent = button.label;
    element.dataset.action = button.action;
    element.addEventListener("click", () => post("api/button", JSON.stringify({ data: button.data })));
    actions.append(element);
  }
  if (event.text) addBubble("bot", event.text);
  log.append(item);
  item.scrollIntoView({ behavior: "smooth", block: "end" });
}

function listen() {
  const events = new EventSource("api/events");
  events.addEventListener("text", (message) => addBubble("bot", JSON.parse(message.data).text));
  events.addEventListener("result", (message) => showResult(JSON.parse(message.data)));
  events.addEventListener("settings", (message) => {
    const settings = JSON.parse(message.data);
    strength.value = settings.strength;
    strengthValue.textContent = settings.strength;
    for (const look of settings.looks) {
      if (![...lookSelect.options].some((option) => option.value === look)) lookSelect.add(new Option(look, look));
    }
  });
  events.addEventListener("hint", (message) => { dropHint.textContent = JSON.parse(message.data).text; });
}

photoInput.addEventListener("change", () => {
  for (const file of photoInput.files) sendPhoto(file);
  photoInput.value = "";
});
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add("over"); });
}
for (const type of ["dragleave", "drop"]) {
  drop.addEventListener(type, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  for (const file of event.dataTransfer.files) sendPhoto(file);
});
strength.addEventListener("input", () => { strengthValue.textContent = strength.value; });
strength.addEventListener("change", () => sendCommand("strength", strength.value));
lookSelect.addEventListener("change", () => { if (lookSelect.value) sendCommand("look", lookSelect.value); });
document.getElementById("reset").addEventListener("click", () => sendCommand("reset"));

listen();
