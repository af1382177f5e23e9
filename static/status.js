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
