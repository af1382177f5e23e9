// Hedwig's small scripts; every page works without them.
// Copy buttons: a button with data-copy="<id>" copies that field's text. Without JavaScript
// (or without the clipboard) the button stays hidden and the field is there to select.
for (const button of document.querySelectorAll("button[data-copy]")) {
  const field = document.getElementById(button.dataset.copy);
  if (!field || !navigator.clipboard) continue;
  button.hidden = false;
  button.addEventListener("click", async () => {
    const text = "value" in field ? field.value : field.textContent;
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      if (field.select) field.select();  // the browser said no: select it to copy by hand
      button.textContent = "Press Ctrl+C";
    }
    setTimeout(() => { button.textContent = "Copy"; }, 2000);
  });
}

// A form marked data-autosubmit (the log's sort) goes as soon as a choice changes; its button
// is for browsers without JavaScript.
for (const form of document.querySelectorAll("form[data-autosubmit]")) {
  for (const button of form.querySelectorAll("button[type=submit]")) button.hidden = true;
  form.addEventListener("change", () => form.submit());
}
