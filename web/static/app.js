// WorkRate Messages: the thread page's behaviour. Everything works without this file (plain forms and
// links); with it, posting does not reload the page, older messages load in place, and new messages
// arrive live over Server-Sent Events. No inline scripts: the Content-Security-Policy forbids them.
(function () {
  "use strict";

  var DELIVERY_REFRESH_MS = 10000;

  function $(sel, root) { return (root || document).querySelector(sel); }

  function localTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) { return; }
      el.title = el.textContent;
      el.textContent = d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    });
  }

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 200;
  }

  function scrollToBottom() { window.scrollTo(0, document.body.scrollHeight); }

  // Adds a message drawn by the server (the same macro as the page) unless it is already shown.
  function appendMessage(html, id) {
    var list = $("#messages");
    if (!list || document.getElementById("m-" + id)) { return false; }
    var stick = nearBottom();
    var holder = document.createElement("div");
    holder.innerHTML = html;
    var article = holder.firstElementChild;
    if (!article) { return false; }
    article.classList.add("arrived");
    list.appendChild(article);
    localTimes(article);
    var empty = $("#empty");
    if (empty) { empty.remove(); }
    if (stick) { scrollToBottom(); }
    return true;
  }

  function setupOlder(thread) {
    var older = $("#older");
    if (!older) { return; }
    older.addEventListener("click", function (ev) {
      var link = ev.target.closest("#load-older");
      if (!link) { return; }
      ev.preventDefault();
      var url = thread.dataset.olderUrl;
      url += (url.indexOf("?") >= 0 ? "&" : "?") + "before=" + encodeURIComponent(thread.dataset.oldestId);
      link.setAttribute("aria-busy", "true");
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (data) {
          link.removeAttribute("aria-busy");
          if (data.error) { return; }
          var list = $("#messages");
          var before = document.body.scrollHeight;
          list.insertAdjacentHTML("afterbegin", data.html);
          localTimes(list);
          window.scrollBy(0, document.body.scrollHeight - before);
          if (data.oldest_id) { thread.dataset.oldestId = data.oldest_id; link.href = "?before=" + data.oldest_id; }
          if (!data.has_more) { link.remove(); }
        })
        .catch(function () { link.removeAttribute("aria-busy"); });
    });
  }

  function setupLive(thread) {
    var url = thread.dataset.eventsUrl;
    if (!url || !window.EventSource) { return; }
    var source = new EventSource(url + "?after=" + encodeURIComponent(thread.dataset.after || "0"));
    source.addEventListener("message", function (ev) {
      var data = JSON.parse(ev.data);
      if (ev.lastEventId) { thread.dataset.after = ev.lastEventId; }
      appendMessage(data.html, data.message_id);
    });
    // "closed": no access any more, or this person has too many pages open; this page stops following.
    source.addEventListener("closed", function () { source.close(); });
    // "reload": too much happened since this page was drawn to replay it; draw the page afresh.
    source.addEventListener("reload", function () { source.close(); window.location.reload(); });
    // The server refused the stream (busy: 503) and the browser gave up: try again a little later.
    source.addEventListener("error", function () {
      if (source.readyState === 2 && thread.dataset.live === "on") {
        thread.dataset.live = "retrying";
        window.setTimeout(function () { setupLive(thread); }, 20000 + Math.random() * 20000);
      }
    });
    thread.dataset.live = "on";
  }

  // The team sees whether notification emails went out; queued ones are looked at again now and then.
  function setupDelivery(thread) {
    var url = thread.dataset.deliveryUrl;
    if (!url) { return; }
    window.setInterval(function () {
      var ids = [];
      document.querySelectorAll("#messages .message").forEach(function (article) {
        var line = article.querySelector(".delivery");
        if (ids.length < 100 && line && line.dataset.pending !== "0") { ids.push(article.dataset.messageId); }
      });
      if (!ids.length || document.hidden) { return; }
      fetch(url + "?ids=" + ids.join(","), { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (lines) {
          Object.keys(lines).forEach(function (id) {
            var old = document.querySelector("#m-" + id + " .delivery");
            if (old && lines[id]) { old.outerHTML = lines[id]; }
          });
        })
        .catch(function () {});
    }, DELIVERY_REFRESH_MS);
  }

  function totalSize(input) {
    var total = 0;
    if (input && input.files) { for (var i = 0; i < input.files.length; i++) { total += input.files[i].size; } }
    return total;
  }

  function megabytes(n) { return Math.round(n / 1048576) + " MB"; }

  function setupComposer(form) {
    var text = $("#composer-text", form);
    var toggle = $("#internal-toggle", form);
    var files = $("#attachments", form);
    var error = $("#composer-error", form);
    var send = $("#send", form);
    var fileList = $("#file-list", form);
    var max = parseInt(form.dataset.maxBytes || "0", 10);

    function showError(sentence) {
      error.textContent = sentence || "";
      error.hidden = !sentence;
    }

    function syncInternal() {
      var on = !!(toggle && toggle.checked);
      form.classList.toggle("internal", on);
      send.textContent = on ? "Send internal note" : "Send";
    }

    if (toggle) { toggle.addEventListener("change", syncInternal); syncInternal(); }

    if (files) {
      files.addEventListener("change", function () {
        var names = [];
        for (var i = 0; i < files.files.length; i++) { names.push(files.files[i].name); }
        fileList.textContent = names.join(", ");
        showError(max && totalSize(files) > max
          ? "The attachments are too large: a message can carry at most " + megabytes(max) + " of files in all."
          : "");
      });
    }

    text.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        form.requestSubmit ? form.requestSubmit(send) : form.submit();
      }
    });

    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (max && totalSize(files) > max) {
        showError("The attachments are too large: a message can carry at most " + megabytes(max) + " of files in all.");
        return;
      }
      if (!text.value.trim() && !(files && files.files.length)) {
        showError("Please write a message or attach a file before sending.");
        return;
      }
      send.disabled = true;
      form.setAttribute("aria-busy", "true");
      fetch(form.action, {
        method: "POST", body: new FormData(form), credentials: "same-origin",
        headers: { Accept: "application/json" }
      }).then(function (r) {
        return r.json().catch(function () { return { error: "The server answered " + r.status + "; your message was not sent." }; });
      }).then(function (data) {
        if (data.error) { showError(data.error); return; }
        showError("");
        appendMessage(data.html, data.id);
        scrollToBottom();
        text.value = "";
        if (files) { files.value = ""; fileList.textContent = ""; }
        text.focus();
      }).catch(function () {
        showError("Could not reach the server, so your message was not sent. Please try again.");
      }).then(function () {
        send.disabled = false;
        form.removeAttribute("aria-busy");
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    var thread = $("#thread");
    if (thread) {
      setupOlder(thread);
      setupLive(thread);
      setupDelivery(thread);
      if (!location.hash && location.search.indexOf("before=") < 0 && !$("#search-summary")) { scrollToBottom(); }
      // Thumbnails load after that and make the page taller: stay at the bottom, or the newest message
      // ends up behind the composer.
      thread.addEventListener("load", function (ev) {
        if (ev.target.tagName === "IMG" && nearBottom()) { scrollToBottom(); }
      }, true);
    }
    var form = $("#composer");
    if (form) { setupComposer(form); }
    var preview = $("#preview-as");
    if (preview) { preview.addEventListener("change", function () { preview.form.submit(); }); }
  });
})();
