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

  // Redraws a message already on the page. The live stream's rendering is shared by everyone of the same
  // audience, so it carries no Edit/Delete menu: the one already on the page is kept (unless deleted).
  function replaceMessage(html, id) {
    var old = document.getElementById("m-" + id);
    if (!old) { return false; }
    var holder = document.createElement("div");
    holder.innerHTML = html;
    var fresh = holder.firstElementChild;
    if (!fresh) { return false; }
    var menu = old.querySelector(".message-menu");
    if (menu && !fresh.querySelector(".message-menu") && !fresh.classList.contains("deleted")) {
      var head = fresh.querySelector(".message-head");
      if (head) { menu.open = false; head.appendChild(menu); }
    }
    ["continued", "unread-first"].forEach(function (c) { if (old.classList.contains(c)) { fresh.classList.add(c); } });
    old.replaceWith(fresh);
    localTimes(fresh);
    fresh.classList.add("changed");
    return true;
  }

  function postJSON(url, body) {
    return fetch(url, {
      method: "POST", body: body, credentials: "same-origin", headers: { Accept: "application/json" }
    }).then(function (r) {
      return r.json().catch(function () { return { error: "The server answered " + r.status + "." }; });
    });
  }

  function csrfToken() {
    var input = document.querySelector("input[name=csrf_token]");
    return input ? input.value : "";
  }

  // Edit in place (the Edit link opens a page of its own without this script), delete after a confirmation.
  function setupMessageActions(list) {
    list.addEventListener("click", function (ev) {
      var link = ev.target.closest(".edit-link");
      if (!link) { return; }
      ev.preventDefault();
      var article = link.closest(".message");
      var menu = link.closest("details");
      if (menu) { menu.open = false; }
      if (article.querySelector(".inline-edit")) { return; }
      fetch(link.href, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (data) { if (data.text !== undefined) { openEditor(article, link.href, data.text); } });
    });
    list.addEventListener("submit", function (ev) {
      var form = ev.target;
      if (form.classList.contains("delete-form")) {
        ev.preventDefault();
        if (!window.confirm("Delete this message? Everyone will see that a message was deleted, and its files stop downloading.")) { return; }
        postJSON(form.action, new FormData(form)).then(function (data) {
          if (data.html) { replaceMessage(data.html, data.id); }
        });
      } else if (form.classList.contains("correction-form")) {
        ev.preventDefault();
        postJSON(form.action, new FormData(form)).then(function (data) {
          var note = document.createElement("span");
          note.className = "correction-sent";
          note.textContent = data.error || data.sentence;
          form.replaceWith(note);
        });
      }
    });
  }

  function openEditor(article, url, text) {
    var body = article.querySelector(".message-body");
    var form = document.createElement("form");
    form.className = "inline-edit";
    var label = document.createElement("label");
    label.className = "visually-hidden";
    label.textContent = "Edit message";
    var area = document.createElement("textarea");
    area.name = "text";
    area.value = text;
    area.rows = Math.min(12, Math.max(3, text.split("\n").length + 1));
    area.id = "edit-" + article.dataset.messageId;
    label.htmlFor = area.id;
    var error = document.createElement("p");
    error.className = "form-error";
    error.setAttribute("role", "alert");
    error.hidden = true;
    var actions = document.createElement("div");
    actions.className = "form-actions";
    var save = document.createElement("button");
    save.type = "submit";
    save.className = "button primary";
    save.textContent = "Save";
    var cancel = document.createElement("button");
    cancel.type = "button";
    cancel.className = "button secondary";
    cancel.textContent = "Cancel";
    actions.append(save, cancel);
    form.append(label, area, error, actions);
    body.hidden = true;
    body.after(form);
    area.focus();
    function close() { form.remove(); body.hidden = false; }
    cancel.addEventListener("click", close);
    area.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape") { close(); }
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); form.requestSubmit(save); }
    });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var data = new FormData();
      data.append("csrf_token", csrfToken());
      data.append("text", area.value);
      save.disabled = true;
      postJSON(url, data).then(function (answer) {
        save.disabled = false;
        if (answer.error) { error.textContent = answer.error; error.hidden = false; return; }
        replaceMessage(answer.html, answer.id);
      });
    });
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
      appendMessage(data.html, data.message_id);
    });
    // An edit or a delete redraws the message in place, wherever the reader is.
    ["edit", "delete"].forEach(function (kind) {
      source.addEventListener(kind, function (ev) {
        var data = JSON.parse(ev.data);
        replaceMessage(data.html, data.message_id);
      });
    });
    source.addEventListener("closed", function () { source.close(); });
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
      setupMessageActions(thread);
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
