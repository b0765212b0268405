// The app's own script (no inline scripts: the CSP forbids them). Small, progressive:
// every page works as plain forms; this adds the sign-in link's token, countdowns and
// confirmations.
"use strict";
(function () {
  function onReady(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  // A sign-in link carries its token after '#', which no server ever sees: move it
  // into the form, drop it from the address bar and history, and sign in.
  function linkToken() {
    var form = document.getElementById("link-form");
    if (!form) return;
    var token = window.location.hash.replace(/^#/, "");
    if (!token) return;
    history.replaceState(null, "", window.location.pathname + window.location.search);
    form.querySelector("[name=token]").value = token;
    if (form.dataset.auto === "yes") form.submit();
  }

  // <span data-countdown="2026-12-04T10:00:00Z" data-expired="…">: seconds left.
  function countdowns() {
    var nodes = document.querySelectorAll("[data-countdown]");
    if (!nodes.length) return;
    function tick() {
      nodes.forEach(function (node) {
        var left = Math.max(0, Math.round((Date.parse(node.dataset.countdown) - Date.now()) / 1000));
        node.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
        if (left === 0 && node.dataset.expiredTarget) {
          var target = document.getElementById(node.dataset.expiredTarget);
          if (target) target.classList.add("expired");
          if (node.dataset.expiredText) node.textContent = node.dataset.expiredText;
        }
      });
    }
    tick();
    setInterval(tick, 1000);
  }

  // <form data-confirm="…">: asks before sending.
  function confirmations() {
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
        event.preventDefault();
      }
    });
  }

  // <button data-print>: prints the page (the poster).
  function printButtons() {
    document.querySelectorAll("[data-print]").forEach(function (button) {
      button.addEventListener("click", function () { window.print(); });
    });
  }

  window.ledgerApp = { onReady: onReady };
  onReady(function () { linkToken(); countdowns(); confirmations(); printButtons(); });
})();
