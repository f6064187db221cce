// The console's only script: copy buttons and confirmations. Everything works without it
// (the text stays selectable; a form posts without asking).
"use strict";

function announce(text) {
  const live = document.getElementById("copy-status");
  if (live) live.textContent = text;
}

async function copyFrom(button) {
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const text = source.textContent;
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    // No clipboard API (plain http on another host): select the text for Ctrl+C instead.
    const range = document.createRange();
    range.selectNodeContents(source);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    announce("Selected: press Ctrl+C (⌘C) to copy.");
    return;
  }
  const label = button.textContent;
  button.textContent = "Copied";
  announce("Copied to the clipboard.");
  setTimeout(() => { button.textContent = label; }, 2000);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (button) copyFrom(button);
});

document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) event.preventDefault();
});
