// The console's only script: live views and the brand preview. Pages work
// without it; it never builds markup from event data (the server renders
// every fragment), so nothing an event carries can become script.
"use strict";
(function () {
  function live(box) {
    var fragment = box.getAttribute("data-live-fragment");
    var since = 0, timer = null, socket = null, retry = 1000;
    function refresh() {
      timer = null;
      fetch(fragment, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) {
          // Sent to the sign-in page (the session ended): show it whole.
          if (r.redirected) { location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html === null) return;
          var doc = new DOMParser().parseFromString(html, "text/html");
          box.replaceChildren.apply(box, Array.prototype.slice.call(doc.body.childNodes));
        })
        .catch(function () {});
    }
    function soon() { if (!timer) timer = setTimeout(refresh, 150); }
    function connect() {
      var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host +
        box.getAttribute("data-live-events") + (since ? "?since=" + since : "");
      socket = new WebSocket(url);
      socket.onopen = function () { retry = 1000; box.setAttribute("data-live", "connected"); };
      socket.onmessage = function (m) {
        var e;
        try { e = JSON.parse(m.data); } catch (err) { return; }
        if (typeof e.seq === "number") since = e.seq;
        if (/^(device_|call_|gap|events_lost|config_changed)/.test(e.type || "")) soon();
      };
      socket.onclose = function () {
        box.setAttribute("data-live", "closed");
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 30000);
      };
    }
    connect();
  }

  function preview(form) {
    var pane = document.querySelector("[data-brand-preview]");
    if (!pane) return;
    function set(name, value) {
      if (/^#[0-9a-fA-F]{6}$/.test(value)) pane.style.setProperty("--preview-" + name, value);
    }
    form.addEventListener("input", function (ev) {
      var t = ev.target, kind = t.getAttribute("data-preview");
      if (kind === "primary" || kind === "accent") set(kind, t.value);
      if (kind === "product") pane.querySelector("[data-preview-product]").textContent = t.value;
      if (kind === "login") pane.querySelector("[data-preview-login]").textContent = t.value;
    });
    var logo = document.querySelector("input[data-preview='logo']");
    if (logo) logo.addEventListener("change", function () {
      var file = logo.files && logo.files[0];
      if (file && /^image\/(png|jpeg|webp)$/.test(file.type)) {
        pane.querySelector("[data-preview-logo]").src = URL.createObjectURL(file);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-live-fragment]"), live);
    Array.prototype.forEach.call(document.querySelectorAll("[data-brand-form]"), preview);
  });
})();
