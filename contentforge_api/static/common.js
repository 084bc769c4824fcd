// What every ContentForge page shares: the API token lives in sessionStorage (this tab only) and is
// sent as "Authorization: Bearer" (with the reviewer's name when one is given); every text from the
// API is inserted with textContent, never as HTML. Loaded before the page's own script.
"use strict";

window.ContentForge = (function () {
  const TOKEN_KEY = "contentforge.token";
  const REVIEWER_KEY = "contentforge.reviewer";

  // el("p", {text: "...", className: "x", "data-id": "7"}, [children]): text only, never markup.
  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children || []) node.appendChild(child);
    return node;
  }

  function headers(extra) {
    const result = Object.assign({ Authorization: "Bearer " + (sessionStorage.getItem(TOKEN_KEY) || "") }, extra);
    const reviewer = sessionStorage.getItem(REVIEWER_KEY);
    if (reviewer) result["X-ContentForge-Reviewer"] = reviewer;
    return result;
  }

  // The raw response of an authorised request; an error (with .status) carries the API's message.
  async function request(path, options) {
    const response = await fetch(path, Object.assign({ credentials: "omit", cache: "no-store" }, options, {
      headers: headers((options && options.headers) || {}),
    }));
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch (e) { body = null; }
      const message = body && body.error ? body.error.message : response.status + " " + response.statusText;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return response;
  }

  // The JSON body of an authorised request (null when the answer has none).
  async function api(path, options) {
    const response = await request(path, options);
    try { return await response.json(); } catch (e) { return null; }
  }

  return { TOKEN_KEY, REVIEWER_KEY, el, headers, request, api };
})();
