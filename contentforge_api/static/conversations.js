// ContentForge conversations page (the review gallery's rules): the API token lives in
// sessionStorage (this tab only) and is sent as "Authorization: Bearer"; every text from the API,
// users' messages first of all, is inserted with textContent, never as HTML.
"use strict";

(function () {
  const { TOKEN_KEY, REVIEWER_KEY, el, headers, api } = window.ContentForge;
  const statusLine = document.getElementById("status");
  const list = document.getElementById("conversation-list");
  const pane = document.getElementById("conversation");
  const filter = document.getElementById("state-filter");
  let openId = null;

  function say(text) { statusLine.textContent = text; }

  function renderConversation(c) {
    const badges = [c.platform, c.state, c.disclosed ? "AI disclosed" : "not disclosed yet"];
    if (c.opted_out) badges.push("opted out");
    const head = el("div", {}, [
      el("h2", { text: c.persona_id + " \u2194 " + c.user_id }),
      el("p", {}, badges.map((b) => el("span", { className: "badge", text: b }))),
      el("p", { text: c.state_reason ? "Why: " + c.state_reason : "" }),
    ]);
    const messages = c.messages.map((m) => el("div", { className: "message " + m.direction }, [
      el("span", { text: m.text }),
      el("span", {
        className: "meta",
        text: [m.created_at, m.status, m.source || "user", m.author || "", m.disclosure ? "disclosure" : ""]
          .filter(Boolean).join(" \u00b7 "),
      }),
    ]));
    const actions = el("div", { className: "actions" });
    if (c.state === "human") {
      const text = el("textarea", { maxLength: 1000, placeholder: "Your reply (sent as yourself, not as the persona)" });
      const send = el("button", { type: "button", text: "Send reply" });
      send.addEventListener("click", () => act(c.id, "replies", { text: text.value }));
      const back = el("button", { type: "button", text: "Hand back to the persona" });
      back.addEventListener("click", () => act(c.id, "handback"));
      actions.append(text, send, back);
    } else if (c.state === "auto") {
      const take = el("button", { type: "button", text: "Take over" });
      take.addEventListener("click", () => act(c.id, "takeover"));
      actions.append(take);
    }
    pane.replaceChildren(head, ...messages, actions);
  }

  async function act(id, action, body) {
    try {
      await api("/api/v1/dm/conversations/" + encodeURIComponent(id) + "/" + action, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: body ? JSON.stringify(body) : undefined,
      });
      say("Done: " + action);
      await load();
    } catch (error) {
      say("Could not " + action + ": " + error.message);
    }
  }

  async function open(id) {
    openId = id;
    renderConversation(await api("/api/v1/dm/conversations/" + encodeURIComponent(id)));
  }

  async function load() {
    if (!sessionStorage.getItem(TOKEN_KEY)) { say("Enter the API token to load the conversations."); return; }
    try {
      const query = filter.value ? "?state=" + encodeURIComponent(filter.value) : "";
      const conversations = await api("/api/v1/dm/conversations" + query);
      list.replaceChildren(...conversations.map((c) => {
        const button = el("button", { type: "button", className: c.state, text: c.user_id + " (" + c.platform + ", " + c.state + ")" });
        button.addEventListener("click", () => open(c.id).catch((error) => say(error.message)));
        return button;
      }));
      say(conversations.length + " conversation(s)");
      if (openId) await open(openId);
    } catch (error) {
      if (error.status === 401) sessionStorage.removeItem(TOKEN_KEY);
      say("Could not load the conversations: " + error.message);
    }
  }

  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    const reviewer = document.getElementById("reviewer").value.trim();
    if (reviewer) sessionStorage.setItem(REVIEWER_KEY, reviewer); else sessionStorage.removeItem(REVIEWER_KEY);
    document.getElementById("token").value = "";
    load();
  });
  filter.addEventListener("change", load);
  document.getElementById("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    list.replaceChildren();
    pane.replaceChildren();
    say("Token forgotten.");
  });
  document.getElementById("reviewer").value = sessionStorage.getItem(REVIEWER_KEY) || "";
  load();
})();
