// The till: scanning a spend code with the camera, and the basket's running total.
// Everything works without it (type the code, type the quantities); this adds the
// camera and the arithmetic. The camera is opened only when the volunteer presses
// 扫码 and closed after a read, on 停止扫码, or when the page is left.
"use strict";
(function () {
  var JSQR = "/app/static/vendor/jsqr-1.4.0.js";

  function onReady(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      var existing = document.querySelector('script[src="' + src + '"]');
      if (existing && window.jsQR) { resolve(); return; }
      var script = document.createElement("script");
      script.src = src;
      script.onload = function () { resolve(); };
      script.onerror = function () { reject(new Error("could not load " + src)); };
      document.head.appendChild(script);
    });
  }

  // A reader of QR codes from video frames: the browser's BarcodeDetector when it
  // reads QR codes, else jsQR on canvas frames.
  function qrReader() {
    var detect = null;
    if ("BarcodeDetector" in window && window.BarcodeDetector.getSupportedFormats) {
      detect = window.BarcodeDetector.getSupportedFormats().then(function (formats) {
        if (formats.indexOf("qr_code") < 0) return null;
        var detector = new window.BarcodeDetector({ formats: ["qr_code"] });
        return function (video) {
          return detector.detect(video).then(function (codes) {
            return codes.length ? codes[0].rawValue : null;
          });
        };
      }).catch(function () { return null; });
    } else {
      detect = Promise.resolve(null);
    }
    return detect.then(function (native) {
      if (native) return native;
      return loadScript(JSQR).then(function () {
        var canvas = document.createElement("canvas");
        var context = canvas.getContext("2d", { willReadFrequently: true });
        return function (video) {
          var width = video.videoWidth, height = video.videoHeight;
          if (!width || !height) return Promise.resolve(null);
          var scale = Math.min(1, 640 / width);
          canvas.width = Math.round(width * scale);
          canvas.height = Math.round(height * scale);
          context.drawImage(video, 0, 0, canvas.width, canvas.height);
          var frame = context.getImageData(0, 0, canvas.width, canvas.height);
          var found = window.jsQR(frame.data, frame.width, frame.height, { inversionAttempts: "attemptBoth" });
          return Promise.resolve(found && found.data ? found.data : null);
        };
      });
    });
  }

  function scanner() {
    var start = document.getElementById("scan-start");
    var form = document.getElementById("code-form");
    if (!start || !form) return;
    var stop = document.getElementById("scan-stop");
    var box = document.getElementById("scanner");
    var video = document.getElementById("scanner-video");
    var status = document.getElementById("scanner-status");
    var field = document.getElementById("code");
    var stream = null, running = false;

    function say(text) { status.textContent = text || ""; }

    function close() {
      running = false;
      if (stream) stream.getTracks().forEach(function (track) { track.stop(); });
      stream = null;
      video.srcObject = null;
      box.classList.add("hidden");
      stop.classList.add("hidden");
      start.classList.remove("hidden");
    }

    function found(text) {
      close();
      field.value = text.trim();
      say(box.dataset.read);
      if (form.requestSubmit) form.requestSubmit(); else form.submit();
    }

    function loop(read) {
      if (!running) return;
      read(video).then(function (text) {
        if (!running) return;
        if (text) { found(text); return; }
        setTimeout(function () { window.requestAnimationFrame(function () { loop(read); }); }, 120);
      }).catch(function () {
        if (running) setTimeout(function () { loop(read); }, 250);
      });
    }

    start.addEventListener("click", function () {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        say(box.dataset.noCamera);
        field.focus();
        return;
      }
      say(box.dataset.starting);
      running = true;
      start.classList.add("hidden");
      stop.classList.remove("hidden");
      box.classList.remove("hidden");
      Promise.all([
        navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false }),
        qrReader()
      ]).then(function (got) {
        if (!running) { got[0].getTracks().forEach(function (t) { t.stop(); }); return; }
        stream = got[0];
        video.srcObject = stream;
        return video.play().then(function () {
          say(box.dataset.aim);
          loop(got[1]);
        });
      }).catch(function () {
        close();
        say(box.dataset.noCamera);
        field.focus();
      });
    });
    stop.addEventListener("click", function () { close(); say(""); field.focus(); });
    window.addEventListener("pagehide", close);
    document.addEventListener("visibilitychange", function () { if (document.hidden && running) close(); });
  }

  // The basket: − / + buttons, and the total in points (the server prices it again).
  function basket() {
    var form = document.getElementById("basket-form");
    if (!form) return;
    var total = document.getElementById("basket-total");
    var over = document.getElementById("over-ceiling");
    var ceiling = parseInt(form.dataset.ceiling, 10);
    var inputs = form.querySelectorAll("input[data-points]");

    function count() {
      var sum = 0;
      inputs.forEach(function (input) {
        var qty = parseInt(input.value, 10);
        if (!input.disabled && qty > 0) sum += qty * parseInt(input.dataset.points, 10);
      });
      total.textContent = sum.toLocaleString("en-US");
      if (over) over.classList.toggle("hidden", !(sum > ceiling));
    }

    form.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-step]");
      if (!button) return;
      var input = document.getElementById(button.dataset.for);
      if (!input || input.disabled) return;
      var max = parseInt(input.max, 10);
      var qty = (parseInt(input.value, 10) || 0) + parseInt(button.dataset.step, 10);
      input.value = String(Math.max(0, isNaN(max) ? qty : Math.min(max, qty)));
      count();
    });
    form.addEventListener("input", count);
    // A second tap while the first is on its way sends nothing new (and the
    // server would answer it as a replay anyway).
    form.addEventListener("submit", function () {
      var submit = form.querySelector("button[type=submit]");
      setTimeout(function () { if (submit) submit.disabled = true; }, 0);
    });
    count();
  }

  onReady(function () { scanner(); basket(); });
})();
