// The rule-set editor: line numbers beside the draft that follow its scrolling, the
// line a refusal names kept in view and reachable from the message, a question before
// publishing, and no second submit while the first is on its way. Without it the
// page still works: the message says the line, the gutter shows it.
"use strict";
(function () {
  function lineHeight(area) {
    var value = parseFloat(window.getComputedStyle(area).lineHeight);
    return isNaN(value) ? 20 : value;
  }

  // Offsets of the start and end of 1-based line `line` in `text`.
  function lineRange(text, line) {
    var start = 0;
    for (var n = 1; n < line; n++) {
      var next = text.indexOf("\n", start);
      if (next === -1) return null;
      start = next + 1;
    }
    var end = text.indexOf("\n", start);
    return [start, end === -1 ? text.length : end];
  }

  function scrollToLine(area, line) {
    area.scrollTop = Math.max(0, (line - 1) * lineHeight(area) - area.clientHeight / 3);
  }

  function gutter(area, numbers) {
    var errorLine = parseInt(numbers.dataset.errorLine || "0", 10);
    function render() {
      var count = area.value.split("\n").length;
      if (numbers.childElementCount === count) return;
      var fragment = document.createDocumentFragment();
      for (var n = 1; n <= count; n++) {
        var span = document.createElement("span");
        span.textContent = String(n);
        if (n === errorLine) span.className = "bad";
        fragment.appendChild(span);
      }
      numbers.replaceChildren(fragment);
    }
    function follow() { numbers.scrollTop = area.scrollTop; }
    area.addEventListener("input", function () { render(); follow(); });
    area.addEventListener("scroll", follow);
    render();
    if (errorLine) scrollToLine(area, errorLine);
    follow();
  }

  // <a data-goto-line="17">: the caret to that line, the line selected.
  function gotoLinks(area) {
    document.querySelectorAll("[data-goto-line]").forEach(function (link) {
      link.addEventListener("click", function (event) {
        event.preventDefault();
        var line = parseInt(link.dataset.gotoLine, 10);
        var range = lineRange(area.value, line);
        if (!range) return;
        area.focus();
        area.setSelectionRange(range[0], range[1]);
        scrollToLine(area, line);
      });
    });
  }

  function submitting(form) {
    form.addEventListener("submit", function (event) {
      var button = event.submitter;
      if (button && button.hasAttribute("data-publish") && !window.confirm(form.dataset.confirmPublish)) {
        event.preventDefault();
        return;
      }
      // After the form's data is taken (the button pressed included), not before.
      window.setTimeout(function () {
        form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
      }, 0);
    });
    // Back from the next page (the browser's cache keeps this one as it was): usable again.
    window.addEventListener("pageshow", function () {
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = false; });
    });
  }

  function start() {
    var area = document.getElementById("draft");
    var numbers = document.getElementById("draft-gutter");
    var form = document.getElementById("rules-form");
    if (!area || !numbers || !form) return;
    gutter(area, numbers);
    gotoLinks(area);
    submitting(form);
  }

  if (document.readyState !== "loading") start(); else document.addEventListener("DOMContentLoaded", start);
})();
