// WorkRate Messages: the thread page's behaviour. Everything works without this file (plain forms and
// links); with it, posting does not reload the page, older messages load in place, and new messages
// arrive live over Server-Sent Events. No inline scripts: the Content-Security-Policy forbids them.
(function () {
  "use strict";

  var DELIVERY_REFRESH_MS = 10000;
  var SIDEBAR_SETTLE_MS = 300;
  var SIDEBAR_MIN_GAP_MS = 2000;  // busy agencies: a tab fetches its sidebar at most this often
  var ANNOUNCE_KEEP_MS = 15000;  // a screen reader has read it by then; the region stays short

  function $(sel, root) { return (root || document).querySelector(sel); }

  // Times are drawn by the server in UTC inside <time datetime>; here they follow the reader's own zone.
  function localTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.dataset.local) { return; }
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) { return; }
      el.dataset.local = "1";
      // In a thread the day separators carry the date; elsewhere (search, lists) it is shown with the time.
      var timeOnly = el.classList.contains("time") && el.closest("#thread");
      el.title = d.toLocaleString([], { dateStyle: "full", timeStyle: "short" });
      el.textContent = timeOnly ? d.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" })
        : friendlyDate(d) + (el.classList.contains("time") && dayKey(d) !== dayKey(new Date())
          ? ", " + d.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" }) : "");
    });
  }

  function dayKey(d) { return d.getFullYear() + "-" + (d.getMonth() + 1) + "-" + d.getDate(); }

  function friendlyDay(d) {
    var today = new Date(), yesterday = new Date();
    yesterday.setDate(today.getDate() - 1);
    if (dayKey(d) === dayKey(today)) { return "Today"; }
    if (dayKey(d) === dayKey(yesterday)) { return "Yesterday"; }
    var opts = { weekday: "long", month: "long", day: "numeric" };
    if (d.getFullYear() !== today.getFullYear()) { opts.year = "numeric"; }
    return d.toLocaleDateString([], opts);
  }

  function friendlyDate(d) {
    var today = new Date();
    if (dayKey(d) === dayKey(today)) { return d.toLocaleTimeString([], { hour: "numeric", minute: "2-digit" }); }
    return d.toLocaleDateString([], { month: "short", day: "numeric",
      year: d.getFullYear() !== today.getFullYear() ? "numeric" : undefined });
  }

  var GROUP_MS = 10 * 60 * 1000;  // messages of one person this close together read as one group

  // Day separators and grouping, redone after every change to the list (cheap: one pass over it).
  function layoutMessages() {
    var list = $("#messages");
    if (!list) { return; }
    list.querySelectorAll(".day-separator").forEach(function (el) { el.remove(); });
    var prev = null;
    list.querySelectorAll(".message").forEach(function (article) {
      var d = new Date(article.dataset.time);
      var pd = prev ? new Date(prev.dataset.time) : null;
      if (!pd || dayKey(pd) !== dayKey(d)) {
        var sep = document.createElement("div");
        sep.className = "day-separator";
        sep.setAttribute("role", "separator");
        var label = document.createElement("span");
        label.textContent = friendlyDay(d);
        sep.appendChild(label);
        list.insertBefore(sep, article);
      }
      var continued = prev && pd && dayKey(pd) === dayKey(d) && prev.dataset.author === article.dataset.author
        && prev.dataset.visibility === article.dataset.visibility && d - pd < GROUP_MS
        && !article.classList.contains("unread-first");
      article.classList.toggle("continued", !!continued);
      prev = article;
    });
  }

  // -- "New" divider, unread count in the tab title and favicon, notifications, announcements
  var baseTitle = document.title;
  var unseen = 0;
  var faviconHref = null;

  function setUnseen(n) {
    unseen = n;
    document.title = (n ? "(" + n + ") " : "") + baseTitle;
    var icon = document.getElementById("favicon");
    if (!icon) { return; }
    if (faviconHref === null) { faviconHref = icon.href; }
    if (!n) { icon.href = faviconHref; return; }
    var canvas = document.createElement("canvas");
    canvas.width = canvas.height = 64;
    var ctx = canvas.getContext("2d");
    if (!ctx) { return; }
    ctx.fillStyle = "#3a5bdc";
    ctx.beginPath(); ctx.arc(32, 32, 30, 0, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = "#e5484d";
    ctx.beginPath(); ctx.arc(44, 20, 20, 0, 2 * Math.PI); ctx.fill();
    ctx.fillStyle = "#fff";
    ctx.font = "bold 26px sans-serif";
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.fillText(n > 9 ? "9+" : String(n), 44, 21);
    icon.href = canvas.toDataURL("image/png");
  }

  function markNewDivider(article) {
    var old = $(".new-divider");
    if (old) { return; }
    var divider = document.createElement("div");
    divider.className = "new-divider";
    divider.id = "new-divider";
    divider.setAttribute("role", "separator");
    divider.setAttribute("aria-label", "New messages");
    var label = document.createElement("span");
    label.textContent = "New";
    divider.appendChild(label);
    article.classList.add("unread-first");
    article.parentNode.insertBefore(divider, article);
  }

  function firstUnreadOnLoad(thread) {
    var lastRead = parseInt(thread.dataset.lastRead || "0", 10);
    if (!lastRead) { return null; }
    var me = thread.dataset.me;
    var found = null;
    document.querySelectorAll("#messages .message").forEach(function (a) {
      if (!found && parseInt(a.dataset.messageId, 10) > lastRead && a.dataset.author !== me) { found = a; }
    });
    return found;
  }

  function announce(article) {
    var box = $("#announcer");
    if (!box || !article) { return; }
    var author = article.querySelector(".author");
    var body = article.querySelector(".message-body");
    var line = document.createElement("p");
    line.textContent = "New message from " + (author ? author.textContent : "someone") + ": " +
      (body ? body.textContent.trim().slice(0, 140) : "");
    box.appendChild(line);
    while (box.childNodes.length > 3) { box.removeChild(box.firstChild); }
    window.setTimeout(function () { line.remove(); }, ANNOUNCE_KEEP_MS);
  }

  function notifyHidden(article) {
    if (!document.hidden || !article || article.classList.contains("mine")) { return; }
    if (!markNewDivider.lastSeenSet) { markNewDivider(article); markNewDivider.lastSeenSet = true; }
    setUnseen(unseen + 1);
    if (window.Notification && Notification.permission === "granted" && localStorage.getItem("workrate-notify") === "on") {
      var author = article.querySelector(".author");
      var body = article.querySelector(".message-body");
      try {
        new Notification((author ? author.textContent : "New message") + " · " + baseTitle.split(" · ")[0],
          { body: body ? body.textContent.trim().slice(0, 200) : "", tag: "workrate-" + article.dataset.messageId });
      } catch (e) { /* some browsers allow notifications from service workers only */ }
    }
  }

  // Tells the server the newest message seen while the page is in view (for unread counts elsewhere).
  var newestSeen = 0;
  function markSeen() {
    var thread = $("#thread");
    if (!thread || !thread.dataset.readUrl || document.hidden || !thread.dataset.eventsUrl) { return; }
    var last = 0;
    document.querySelectorAll("#messages .message").forEach(function (a) {
      last = Math.max(last, parseInt(a.dataset.messageId, 10) || 0);
    });
    if (last <= newestSeen) { return; }
    newestSeen = last;
    var data = new FormData();
    data.append("csrf_token", csrfToken());
    postJSON(thread.dataset.readUrl.replace(/\/0\/read$/, "/" + last + "/read"), data).catch(function () {});
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { setUnseen(0); markNewDivider.lastSeenSet = false; markSeen(); }
  });

  function setupNotifyButton(thread) {
    if (!window.Notification || !thread.dataset.eventsUrl) { return; }
    var nav = $(".thread-header");
    if (!nav) { return; }
    var button = document.createElement("button");
    button.type = "button";
    button.className = "link-button notify-toggle";
    button.id = "notify-toggle";
    function sync() {
      var on = Notification.permission === "granted" && localStorage.getItem("workrate-notify") === "on";
      button.textContent = on ? "Notifications on" : "Notify me";
      button.setAttribute("aria-pressed", on ? "true" : "false");
    }
    button.addEventListener("click", function () {
      if (localStorage.getItem("workrate-notify") === "on") { localStorage.removeItem("workrate-notify"); sync(); return; }
      Notification.requestPermission().then(function (p) {
        if (p === "granted") { localStorage.setItem("workrate-notify", "on"); }
        sync();
      });
    });
    sync();
    nav.appendChild(button);
  }

  function setupJump(thread) {
    var jump = $("#jump-latest");
    if (!jump) { return; }
    var pending = 0;
    var composer = $("#composer");
    function update() {
      var far = !nearBottom();
      jump.hidden = !far;
      // Float just above the (sticky) composer, whatever its height.
      if (composer) { jump.style.bottom = (composer.getBoundingClientRect().height + 12) + "px"; }
      if (!far) { pending = 0; }
      $(".jump-count", jump).textContent = pending ? "(" + pending + " new)" : "";
    }
    window.addEventListener("scroll", update, { passive: true });
    jump.addEventListener("click", function () {
      if (location.search.indexOf("before=") >= 0) { location.href = location.pathname; return; }
      scrollToBottom();
      var last = document.querySelector("#messages .message:last-of-type");
      if (last) { last.setAttribute("tabindex", "-1"); last.focus({ preventScroll: true }); }
      update();
    });
    thread.addEventListener("workrate:arrived", function () { if (!nearBottom()) { pending++; } update(); });
    update();
  }

  // A link to one message (search results, "show in the thread") scrolls it into view and highlights it.
  function highlightTarget() {
    var m = /^#m-(\d+)$/.exec(location.hash);
    if (!m) { return; }
    var el = document.getElementById("m-" + m[1]);
    if (!el) { return; }
    el.classList.add("target");
    el.scrollIntoView({ block: "center" });
  }

  // The team's workspace sidebar is drawn by the server (previews through the visibility rule). It is
  // fetched once, then again only when the live stream says some thread changed ("sidebar") or has
  // reconnected (it may have missed changes meanwhile); a hidden tab fetches when it is shown again.
  function setupSidebar(thread) {
    var url = thread.dataset.sidebarUrl;
    var holder = $("#sidebar");
    if (!url || !holder) { return; }
    var timer = null;
    var stale = false;
    var last = 0;
    function refresh() {
      if (document.hidden) { stale = true; return; }
      stale = false;
      last = Date.now();
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (data) { if (data.html) { holder.innerHTML = data.html; localTimes(holder); } })
        .catch(function () {});
    }
    thread.addEventListener("workrate:sidebar", function () {
      if (timer) { return; }
      var wait = Math.max(SIDEBAR_SETTLE_MS, last + SIDEBAR_MIN_GAP_MS - Date.now());
      timer = window.setTimeout(function () { timer = null; refresh(); }, wait);
    });
    document.addEventListener("visibilitychange", function () { if (!document.hidden && stale) { refresh(); } });
    refresh();
  }

  // "Client is away" (templates/team/_away_note.html): a contact who writes is back, so a message of theirs
  // arriving live takes them off the note (the server decides the same on the next page load).
  function setupAwayNote(thread) {
    var note = $("#away-note");
    if (!note) { return; }
    thread.addEventListener("workrate:arrived", function () {
      var newest = $("#messages") && $("#messages").lastElementChild;
      var author = newest && newest.dataset.author;
      if (!author) { return; }
      note.querySelectorAll(".away").forEach(function (el) {
        if (el.dataset.email === author) { el.remove(); }
      });
      if (!note.querySelector(".away")) { note.remove(); }
    });
  }

  // The person's time zone for emails, taken from the browser once (editable on their account page).
  function rememberTimeZone() {
    var body = document.body;
    if (!body.dataset.timeZoneUrl || body.dataset.timeZone) { return; }
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!zone) { return; }
    var data = new FormData();
    data.append("csrf_token", csrfToken());
    data.append("time_zone", zone);
    postJSON(body.dataset.timeZoneUrl, data).then(function () { body.dataset.timeZone = zone; }).catch(function () {});
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
    notifyHidden(article);
    layoutMessages();
    if (!article.classList.contains("mine")) { announce(article); }
    if (stick) { scrollToBottom(); }
    var thread = $("#thread");
    if (thread) { thread.dispatchEvent(new CustomEvent("workrate:arrived")); }
    markSeen();
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
    layoutMessages();
    fresh.classList.add("changed");
    var thread = $("#thread");
    if (thread) { thread.dispatchEvent(new CustomEvent("workrate:changed")); }
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
          var box = $("#announcer");
          if (box) { box.textContent = ""; }
        });
      } else if (form.classList.contains("restore-form")) {
        ev.preventDefault();
        var restore = new FormData(form);
        restore.set("csrf_token", csrfToken());  // a copy drawn by a live update carries none
        postJSON(form.action, restore).then(function (data) {
          if (data.html) { replaceMessage(data.html, data.id); } else if (data.error) { window.alert(data.error); }
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
          layoutMessages();
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
    // An edit or a delete redraws the message in place, wherever the reader is.
    ["edit", "delete"].forEach(function (kind) {
      source.addEventListener(kind, function (ev) {
        var data = JSON.parse(ev.data);
        replaceMessage(data.html, data.message_id);
        if (kind === "delete") { var box = $("#announcer"); if (box) { box.textContent = ""; } }
      });
    });
    // The team's sidebar: some thread changed, or the stream reconnected and may have missed changes.
    source.addEventListener("sidebar", function () { thread.dispatchEvent(new CustomEvent("workrate:sidebar")); });
    source.addEventListener("open", function () {
      thread.dataset.liveOpens = String(Number(thread.dataset.liveOpens || "0") + 1);
      if (thread.dataset.liveOpens !== "1") { thread.dispatchEvent(new CustomEvent("workrate:sidebar")); }
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

  function humanSize(n) {
    if (n < 1024) { return n + (n === 1 ? " byte" : " bytes"); }
    var units = ["KiB", "MiB", "GiB"], v = n, i = -1;
    do { v /= 1024; i++; } while (v >= 1024 && i < units.length - 1);
    return v.toFixed(1).replace(/\.0$/, "") + " " + units[i];
  }

  // Markdown stays the stored format: the toolbar and shortcuts only write its marks around the selection.
  function formatText(area, kind) {
    var start = area.selectionStart, end = area.selectionEnd, value = area.value;
    var selected = value.slice(start, end);
    var before = value.slice(0, start), after = value.slice(end);
    var insert, selStart, selEnd;
    if (kind === "bold" || kind === "italic") {
      var mark = kind === "bold" ? "**" : "_";
      var word = selected || (kind === "bold" ? "bold text" : "italic text");
      if (selected && before.slice(-mark.length) === mark && after.slice(0, mark.length) === mark) {
        area.value = before.slice(0, -mark.length) + selected + after.slice(mark.length);
        area.setSelectionRange(start - mark.length, end - mark.length);
        return;
      }
      insert = mark + word + mark;
      selStart = start + mark.length; selEnd = selStart + word.length;
    } else if (kind === "bullets" || kind === "numbers") {
      var lineStart = value.lastIndexOf("\n", start - 1) + 1;
      before = value.slice(0, lineStart);
      selected = value.slice(lineStart, end) || "";
      var lines = selected.split("\n");
      insert = lines.map(function (line, i) {
        var clean = line.replace(/^(\s*)([-*+]|\d+\.)\s+/, "$1");
        return (kind === "bullets" ? "- " : (i + 1) + ". ") + clean;
      }).join("\n");
      if (before && !/\n\n$/.test(before) && !/^\s*([-*+]|\d+\.)\s/.test(before.split("\n").slice(-2)[0] || "")) {
        before += "\n";
      }
      selStart = before.length + insert.length; selEnd = selStart;
    } else if (kind === "link") {
      var url = window.prompt("Link address (https://…)", /^https?:\/\//.test(selected) ? selected : "https://");
      if (!url || url === "https://") { area.focus(); return; }
      var label = selected && selected !== url ? selected : "link text";
      insert = "[" + label + "](" + url.trim() + ")";
      selStart = start + 1; selEnd = selStart + label.length;
    } else { return; }
    area.value = before + insert + after;
    area.focus();
    area.setSelectionRange(selStart, selEnd);
    area.dispatchEvent(new Event("input", { bubbles: true }));
  }

  function setupComposer(form) {
    var text = $("#composer-text", form);
    var toggle = $("#internal-toggle", form);
    var input = $("#attachments", form);
    var error = $("#composer-error", form);
    var send = $("#send", form);
    var fileList = $("#file-list", form);
    var staged = $("#staged-files", form);
    var toolbar = $(".toolbar", form);
    var preview = $("#composer-preview", form);
    var previewToggle = $("#preview-toggle", form);
    var box = $("#composer-box", form);
    var max = parseInt(form.dataset.maxBytes || "0", 10);
    var maxFiles = parseInt(form.dataset.maxFiles || "20", 10);
    var maxLabel = form.dataset.maxLabel || humanSize(max);
    var draftKey = form.dataset.draftKey ? "workrate-draft:" + form.dataset.draftKey : "";
    var files = [];  // {file, item, bar}

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

    // -- toolbar, shortcuts, preview
    toolbar.hidden = false;
    toolbar.addEventListener("click", function (ev) {
      var button = ev.target.closest("[data-format]");
      if (button) { formatText(text, button.dataset.format); }
    });
    // Arrow keys move between the toolbar's buttons (one tab stop for the whole toolbar).
    var tools = Array.prototype.slice.call(toolbar.querySelectorAll("button"));
    tools.forEach(function (b, i) { b.tabIndex = i === 0 ? 0 : -1; });
    toolbar.addEventListener("keydown", function (ev) {
      var i = tools.indexOf(document.activeElement);
      if (i < 0 || (ev.key !== "ArrowRight" && ev.key !== "ArrowLeft")) { return; }
      ev.preventDefault();
      var next = tools[(i + (ev.key === "ArrowRight" ? 1 : tools.length - 1)) % tools.length];
      tools.forEach(function (b) { b.tabIndex = -1; });
      next.tabIndex = 0;
      next.focus();
    });
    function setPreview(on) {
      previewToggle.setAttribute("aria-pressed", on ? "true" : "false");
      preview.hidden = !on;
      text.hidden = on;
      if (!on) { text.focus(); return; }
      preview.textContent = "…";
      var data = new FormData();
      data.append("csrf_token", csrfToken());
      data.append("text", text.value);
      postJSON(form.dataset.previewUrl, data).then(function (answer) {
        preview.innerHTML = answer.html || "<p class=\"muted\">Nothing to preview yet.</p>";
      });
    }
    if (form.dataset.previewUrl) {
      previewToggle.addEventListener("click", function () { setPreview(preview.hidden); });
    } else { previewToggle.hidden = true; }

    text.addEventListener("keydown", function (ev) {
      var mod = ev.ctrlKey || ev.metaKey;
      if (ev.key === "Enter" && mod) {
        ev.preventDefault();
        form.requestSubmit ? form.requestSubmit(send) : form.submit();
        return;
      }
      if (!mod || ev.altKey || ev.shiftKey) { return; }
      var key = ev.key.toLowerCase();
      var kind = { b: "bold", i: "italic", k: "link" }[key];
      if (kind) { ev.preventDefault(); formatText(text, kind); }
    });

    // -- draft kept per workspace across reloads
    if (draftKey) {
      try {
        var saved = window.localStorage.getItem(draftKey);
        if (saved && !text.value) { text.value = saved; }
      } catch (e) { draftKey = ""; }
    }
    function saveDraft() {
      if (!draftKey) { return; }
      try {
        if (text.value.trim()) { window.localStorage.setItem(draftKey, text.value); }
        else { window.localStorage.removeItem(draftKey); }
      } catch (e) { /* storage full or refused: the draft is just not kept */ }
    }
    text.addEventListener("input", saveDraft);

    // -- attachments: picked, dropped or pasted; each listed with its size, a progress bar and Remove
    function stagedBytes() { return files.reduce(function (n, f) { return n + f.file.size; }, 0); }
    function describeFiles() {
      staged.hidden = !files.length;
      fileList.textContent = files.length
        ? files.length + (files.length === 1 ? " file, " : " files, ") + humanSize(stagedBytes()) + " of " + maxLabel
        : "";
    }
    function addFiles(list) {
      var refused = [];
      Array.prototype.forEach.call(list, function (file) {
        if (files.length >= maxFiles) { refused.push(file.name + " (at most " + maxFiles + " files per message)"); return; }
        if (max && stagedBytes() + file.size > max) {
          refused.push(file.name + " (" + humanSize(file.size) + ": the files of one message can total at most " + maxLabel + ")");
          return;
        }
        var name = file.name || "pasted-image.png";
        var item = document.createElement("li");
        item.className = "staged-file";
        var label = document.createElement("span");
        label.className = "staged-name";
        label.textContent = name;
        var size = document.createElement("span");
        size.className = "size";
        size.textContent = humanSize(file.size);
        var bar = document.createElement("progress");
        bar.max = 100; bar.value = 0;
        bar.setAttribute("aria-label", "Upload of " + name);
        var remove = document.createElement("button");
        remove.type = "button";
        remove.className = "remove-file";
        remove.setAttribute("aria-label", "Remove " + name);
        remove.textContent = "×";
        item.append(label, size, bar, remove);
        staged.appendChild(item);
        var entry = { file: file, name: name, item: item, bar: bar };
        files.push(entry);
        remove.addEventListener("click", function () {
          files = files.filter(function (f) { return f !== entry; });
          item.remove();
          describeFiles();
          text.focus();
        });
      });
      describeFiles();
      showError(refused.length ? "Not attached: " + refused.join("; ") + "." : "");
    }
    input.addEventListener("change", function () { addFiles(input.files); input.value = ""; });
    text.addEventListener("paste", function (ev) {
      var pasted = ev.clipboardData && ev.clipboardData.files;
      if (pasted && pasted.length) { ev.preventDefault(); addFiles(pasted); }
    });
    var dropZone = document.body;
    var dragDepth = 0;
    dropZone.addEventListener("dragenter", function (ev) {
      if (!ev.dataTransfer || Array.prototype.indexOf.call(ev.dataTransfer.types, "Files") < 0) { return; }
      dragDepth++; box.classList.add("dragging");
    });
    dropZone.addEventListener("dragleave", function () { dragDepth = Math.max(0, dragDepth - 1); if (!dragDepth) { box.classList.remove("dragging"); } });
    dropZone.addEventListener("dragover", function (ev) { if (ev.dataTransfer) { ev.preventDefault(); } });
    dropZone.addEventListener("drop", function (ev) {
      dragDepth = 0; box.classList.remove("dragging");
      if (!ev.dataTransfer || !ev.dataTransfer.files.length) { return; }
      ev.preventDefault();
      addFiles(ev.dataTransfer.files);
    });

    // -- sending: one request; files go in order, so each bar follows its own share of the bytes sent
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (!text.value.trim() && !files.length) {
        showError("Please write a message or attach a file before sending.");
        return;
      }
      var data = new FormData();
      data.append("csrf_token", csrfToken());
      data.append("text", text.value);
      if (toggle && toggle.checked) { data.append("internal", "1"); }
      files.forEach(function (f) { data.append("attachments", f.file, f.name); });
      send.disabled = true;
      form.setAttribute("aria-busy", "true");
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      var total = stagedBytes();
      xhr.upload.addEventListener("progress", function (p) {
        if (!p.lengthComputable || !total) { return; }
        var sent = Math.max(0, p.loaded - (p.total - total));  // bytes beyond the text part, roughly
        var offset = 0;
        files.forEach(function (f) {
          var share = f.file.size ? Math.min(1, Math.max(0, (sent - offset) / f.file.size)) : 1;
          f.bar.value = Math.round(share * 100);
          offset += f.file.size;
        });
      });
      function done() { send.disabled = false; form.removeAttribute("aria-busy"); }
      xhr.addEventListener("load", function () {
        done();
        var answer;
        try { answer = JSON.parse(xhr.responseText); }
        catch (e) { answer = { error: "The server answered " + xhr.status + "; your message was not sent." }; }
        if (answer.error) { showError(answer.error); files.forEach(function (f) { f.bar.value = 0; }); return; }
        showError("");
        // The live stream may have drawn it first, without this author's Edit/Delete menu: take ours.
        if (!appendMessage(answer.html, answer.id)) { replaceMessage(answer.html, answer.id); }
        scrollToBottom();
        text.value = "";
        saveDraft();
        files = []; staged.textContent = ""; describeFiles();
        if (!preview.hidden) { setPreview(false); }
        text.focus();
      });
      xhr.addEventListener("error", function () {
        done();
        showError("Could not reach the server, so your message was not sent. Please try again.");
      });
      xhr.send(data);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    rememberTimeZone();
    var thread = $("#thread");
    if (thread) {
      var firstUnread = firstUnreadOnLoad(thread);
      if (firstUnread) { markNewDivider(firstUnread); }
      layoutMessages();
      setupOlder(thread);
      setupLive(thread);
      setupDelivery(thread);
      setupMessageActions(thread);
      setupJump(thread);
      setupSidebar(thread);
      setupAwayNote(thread);
      setupNotifyButton(thread);
      if (location.hash) { highlightTarget(); }
      else if (firstUnread && firstUnread.previousElementSibling) {
        firstUnread.previousElementSibling.scrollIntoView({ block: "start" });
      } else if (location.search.indexOf("before=") < 0) { scrollToBottom(); }
      // Thumbnails load after that and make the page taller: stay at the bottom, or the newest message
      // ends up behind the composer.
      thread.addEventListener("load", function (ev) {
        if (ev.target.tagName === "IMG" && nearBottom()) { scrollToBottom(); }
      }, true);
    }
    window.addEventListener("hashchange", highlightTarget);
    var form = $("#composer");
    if (form) { setupComposer(form); }
    var preview = $("#preview-as");
    if (preview) { preview.addEventListener("change", function () { preview.form.submit(); }); }
  });
})();
