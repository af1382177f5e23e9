// The status form: "Add an internal note" follows the status chosen (on for planned, done
// and declined), until someone ticks or unticks it themselves.
for (const form of document.querySelectorAll("form.status-form")) {
  const notify = form.querySelector("input[type=checkbox][name=notify]");
  if (!notify) continue;  // no conversation to note: no box to follow the status
  let chosenByHand = false;
  notify.addEventListener("change", () => { chosenByHand = true; });
  form.querySelector("select[name=status]").addEventListener("change", (event) => {
    if (!chosenByHand) notify.checked = event.target.selectedOptions[0].dataset.notify === "on";
  });
}

// The reply to the customers: its words follow the status chosen (each status's template),
// until someone edits them; the preview shows them as the first customer reads them.
for (const form of document.querySelectorAll("form.status-form")) {
  const reply = form.querySelector("textarea[name=reply_message]");
  const preview = form.querySelector(".reply-preview");
  if (!reply || !preview) continue;
  const select = form.querySelector("select[name=status]");
  let editedByHand = false;
  const show = () => {
    const option = select.selectedOptions[0];
    const count = Number(option.dataset.replyCount);
    const skipped = option.dataset.replySkipped;
    const name = option.dataset.replyName;
    const words = reply.value.replace(/\{(first_name|title)\}/g, (_, key) =>
      key === "first_name" ? name : preview.dataset.title);
    preview.replaceChildren();
    const line = document.createElement("p");
    line.className = "reply-count";
    line.textContent = (count ? `${count} ${count === 1 ? "customer gets" : "customers get"} it`
      : "No customer gets it") + (skipped ? ` (skipped: ${skipped})` : "") + ".";
    const as = document.createElement("p");
    as.className = "muted";
    as.textContent = `As ${name} reads it:`;
    const text = document.createElement("blockquote");
    text.className = "reply-text";
    text.textContent = words;
    preview.append(line, as, text);
  };
  reply.addEventListener("input", () => { editedByHand = true; show(); });
  select.addEventListener("change", () => {
    if (!editedByHand) reply.value = select.selectedOptions[0].dataset.reply;
    show();
  });
}
