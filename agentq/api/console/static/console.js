// agentq console: live refresh of the pages, actions with CSRF and confirmation, and a
// conversation's live stream (tokens as a reply is written). Plain JavaScript, no build.
"use strict";

(function () {
  const csrf = document.body.dataset.csrf || "";
  const page = document.getElementById("page");

  function notice(text, bad) {
    const box = document.getElementById("notice");
    if (!box) return;
    box.textContent = text;
    box.className = bad ? "bad" : "good";
    box.hidden = false;
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => { box.hidden = true; }, bad ? 12000 : 5000);
  }

  function fragmentUrl() {
    const url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    url.hash = "";
    return url.toString();
  }

  let refreshing = false;
  async function refresh() {
    if (refreshing || !page) return;
    // never under the user's hands: an open <select> or a focused field
    const active = document.activeElement;
    if (active && page.contains(active) && /^(SELECT|INPUT|TEXTAREA)$/.test(active.tagName)) return;
    refreshing = true;
    try {
      const answer = await fetch(fragmentUrl(), { credentials: "same-origin", cache: "no-store" });
      if (answer.status === 401 || answer.redirected) { window.location.reload(); return; }
      if (answer.ok) {
        page.innerHTML = await answer.text();
        document.dispatchEvent(new CustomEvent("console:refreshed"));
      }
    } catch (err) {
      // the API restarting: try again at the next tick
    } finally {
      refreshing = false;
    }
  }
  window.consoleRefresh = refresh;

  const every = page && parseInt(page.dataset.refresh || "0", 10);
  if (every > 0) setInterval(() => { if (!document.hidden) refresh(); }, every);

  // Actions: <button class="act" data-post="/console/..." data-confirm="...">
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-post]");
    if (!button) return;
    event.preventDefault();
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    try {
      const answer = await fetch(button.dataset.post, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: "{}",
      });
      let body = {};
      try { body = await answer.json(); } catch (err) { body = {}; }
      if (answer.ok && body.next) { window.location.assign(body.next); return; }
      if (answer.ok) notice(body.message || "done", false);
      else notice(body.error || ("refused: HTTP " + answer.status), true);
    } catch (err) {
      notice("the console did not answer", true);
    } finally {
      button.disabled = false;
      refresh();
    }
  });

  // Login: the key goes as JSON (the API reads JSON bodies only), never in a URL.
  const login = document.getElementById("login");
  if (login) {
    login.addEventListener("submit", async (event) => {
      event.preventDefault();
      const error = document.getElementById("login-error");
      const answer = await fetch("/console/login", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ key: document.getElementById("key").value, next: login.dataset.next }),
      });
      let body = {};
      try { body = await answer.json(); } catch (err) { body = {}; }
      if (answer.ok) { window.location.assign(body.next || "/console/conversations"); return; }
      error.textContent = body.error || body.detail || ("HTTP " + answer.status);
      error.hidden = false;
    });
  }

  // A conversation: its live stream. Tokens fill the "writing" box; a stored event
  // (a message, a job's progress) reloads the timeline.
  const writing = document.getElementById("writing");
  if (writing && window.EventSource) {
    const text = document.getElementById("writing-text");
    const jobLabel = document.getElementById("writing-job");
    let current = null;
    let pending = null;
    const source = new EventSource(writing.dataset.live);
    source.addEventListener("token", (event) => {
      const t = JSON.parse(event.data);
      if (t.job_id !== current || t.restart) {
        current = t.job_id;
        text.textContent = "";
        jobLabel.textContent = "job " + t.job_id;
      }
      writing.hidden = false;
      writing.dataset.job = t.job_id;
      text.textContent += t.text;
    });
    source.addEventListener("changed", (event) => {
      const e = JSON.parse(event.data);
      if (e.type === "agent.responded" || e.type === "job.failed" || e.type === "job.completed") {
        writing.hidden = true;
        text.textContent = "";
        current = null;
      }
      clearTimeout(pending);
      pending = setTimeout(refresh, 150);
    });
    // the timeline's state changes without events too (a debounce window running out)
    setInterval(() => { if (!document.hidden) refresh(); }, 5000);
  }
})();
