// The month switch on the figures page: choosing a month shows it at once. Without this
// script the form's button does the same.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const select = document.getElementById("month-select");
  if (select === null) {
    return;
  }
  select.addEventListener("change", () => {
    select.form.submit();
  });
});
