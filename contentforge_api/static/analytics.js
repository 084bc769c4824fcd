// ContentForge analytics page. The API token lives in sessionStorage (this tab only) and is sent as
// "Authorization: Bearer"; every text from the API is inserted with textContent, never as HTML.
"use strict";

(function () {
  const { TOKEN_KEY, request: api } = window.ContentForge;
  const statusLine = document.getElementById("status");
  const main = document.getElementById("accounts");
  const alertList = document.getElementById("alerts");
  const objectUrls = [];

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function say(text) { statusLine.textContent = text; }

  async function plot(path) {
    const img = el("img");
    img.alt = "plot";
    try {
      const blob = await (await api(path)).blob();
      const url = URL.createObjectURL(blob);
      objectUrls.push(url);
      img.src = url;
    } catch (error) {
      return el("p", "no plot (" + error.message + ")");
    }
    return img;
  }

  function lifts(items) {
    return items.slice(0, 5).map(function (w) {
      return w.key + " " + w.lift.toFixed(2) + " (" + w.lower.toFixed(2) + "-" + w.upper.toFixed(2) + ", n=" + w.posts + ")";
    }).join(", ") || "nothing with enough posts yet";
  }

  async function showAccount(account) {
    const base = "/api/v1/analytics/accounts/" + encodeURIComponent(account.platform) + "/" + encodeURIComponent(account.account);
    const section = el("section", undefined, "account");
    const title = el("h2", account.account + " on " + account.platform);
    if (account.simulated) title.appendChild(el("span", "SIMULATED", "simulated"));
    section.appendChild(title);
    main.appendChild(section);
    const summary = await (await api(base)).json();
    const facts = el("ul");
    facts.appendChild(el("li", summary.posts + " posts with normalized engagement"));
    facts.appendChild(el("li", summary.timing.enough ? "best hour " + summary.timing.best_hour + ":00 (" + summary.timing.reason + ")" : summary.timing.reason));
    for (const [kind, ranking] of Object.entries(summary.rankings)) {
      facts.appendChild(el("li", kind + ": " + lifts(ranking.ranked)));
    }
    facts.appendChild(el("li", "reach drops: " + (summary.drops.found.map(function (d) { return d.starts_on; }).join(", ") || summary.drops.reason)));
    if (summary.model) facts.appendChild(el("li", "model: " + summary.model));
    section.appendChild(facts);
    for (const name of ["reach", "best-times", "rankings", "predicted-vs-actual"]) {
      section.appendChild(await plot(base + "/plots/" + name + ".png"));
    }
  }

  async function load() {
    while (objectUrls.length) URL.revokeObjectURL(objectUrls.pop());
    main.replaceChildren();
    alertList.replaceChildren();
    if (!sessionStorage.getItem(TOKEN_KEY)) { say("Enter the API token to load the accounts."); return; }
    try {
      say("Loading…");
      const alerts = await (await api("/api/v1/analytics/alerts")).json();
      for (const alert of alerts.alerts.slice(0, 20)) {
        alertList.appendChild(el("li", "reach drop: " + alert.account + " on " + alert.platform + " from " + alert.starts_on + (alert.simulated ? " (simulated)" : "")));
      }
      const accounts = (await (await api("/api/v1/analytics/accounts")).json()).items;
      if (!accounts.length) { say("No metrics yet: contentforge analytics collect, import or demo."); return; }
      for (const account of accounts) await showAccount(account);
      say(accounts.length + " account(s).");
    } catch (error) {
      if (error.status === 401) sessionStorage.removeItem(TOKEN_KEY);
      say("Could not load: " + error.message);
    }
  }

  document.getElementById("token-form").addEventListener("submit", function (event) {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    load();
  });
  document.getElementById("forget-token").addEventListener("click", function () {
    sessionStorage.removeItem(TOKEN_KEY);
    load();
  });
  load();
})();
