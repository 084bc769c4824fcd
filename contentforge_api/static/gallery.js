// ContentForge review gallery. The API token lives in sessionStorage (this tab only) and is sent as
// "Authorization: Bearer"; every text from the API is inserted with textContent, never as HTML.
"use strict";

(function () {
  const { TOKEN_KEY, REVIEWER_KEY, el, headers, api } = window.ContentForge;
  const batchId = document.body.dataset.batchId;
  const statusLine = document.getElementById("status");
  const grid = document.getElementById("grid");
  const summary = document.getElementById("summary");
  const objectUrls = [];
  const inView = new Set();  // ids of the pieces this page shows: a link to one of them stays on the page

  function cardId(pieceId) { return "piece-" + pieceId; }

  function say(text) { statusLine.textContent = text; }

  function money(value) { return value == null ? "-" : "$" + Number(value).toFixed(4); }

  async function showImage(img, url) {
    if (!url) { img.alt = "no image yet"; return; }
    if (url.startsWith("/content/")) {
      const response = await fetch(url, { headers: headers({}), credentials: "omit" });
      if (!response.ok) { img.alt = "image unavailable (" + response.status + ")"; return; }
      const objectUrl = URL.createObjectURL(await response.blob());
      objectUrls.push(objectUrl);
      img.src = objectUrl;
    } else if (/^https?:\/\//i.test(url)) {
      img.src = url;
    }
  }

  function renderSummary(batch) {
    summary.replaceChildren();
    const stats = batch.stats || {};
    const entries = [
      ["persona", batch.persona_id],
      ["platform", batch.platform],
      ["batch status", batch.status],
      ["pieces", String(stats.pieces ?? "-")],
      ["waiting for review", String((stats.by_status || {}).needs_review ?? 0)],
      ["total cost", money(stats.cost_usd_total)],
    ];
    // Pieces a cancelled or crashed run never made: resuming the batch id makes them.
    const stopped = ((stats.by_status || {}).cancelled ?? 0) + ((stats.by_status || {}).crashed ?? 0);
    if (stopped) entries.splice(4, 0, ["not made (run stopped)", String(stopped)]);
    for (const [name, value] of entries) {
      summary.appendChild(el("div", {}, [el("dt", { text: name }), el("dd", { text: value })]));
    }
  }

  function renderPiece(piece) {
    const card = el("article", { className: "piece", id: cardId(piece.id), tabIndex: -1,
      "data-piece-id": piece.id, "data-status": piece.status });
    const img = el("img", { className: "piece-image", alt: "piece " + piece.id });
    card.appendChild(img);
    showImage(img, piece.image_url).catch(() => { img.alt = "image unavailable"; });
    card.appendChild(el("h2", { text: "#" + piece.index + " · " + piece.template_id }));
    if (piece.parent_piece_id) card.appendChild(variationOf(piece.parent_piece_id));
    card.appendChild(el("p", {}, [
      el("span", { className: "badge status status-" + piece.status, text: piece.status }),
      el("span", { className: "badge tier", text: "tier " + (piece.tier || piece.template_tier) }),
      el("span", { className: "badge cost", text: money(piece.cost_usd_total) }),
    ]));
    const scores = Object.entries(piece.moderation_scores || {}).sort((a, b) => b[1] - a[1]);
    card.appendChild(el("ul", { className: "scores" },
      scores.map(([name, value]) => el("li", { text: name + ": " + Number(value).toFixed(3) }))));
    if ((piece.moderation_reasons || []).length) {
      card.appendChild(el("ul", { className: "reasons" },
        piece.moderation_reasons.map((reason) => el("li", { text: reason }))));
    }
    if (piece.prompt_quality_gate) card.appendChild(el("p", {}, [gateBadge("image prompt", piece.prompt_quality_gate)]));
    // AUTO or ASSISTED: which LoRAs and parameters were chosen, and why (one line from the record).
    if (piece.decision) card.appendChild(el("p", { className: "decision", text: piece.decision }));
    card.appendChild(el("ul", { className: "hooks" },
      (piece.hooks || []).map((hook) => el("li", { className: "hook", text: hook.quality_gate ? hook.text + " " : hook.text },
        hook.quality_gate ? [gateBadge("gate", hook.quality_gate)] : []))));
    if (piece.error) card.appendChild(el("p", { className: "message", text: piece.error }));
    if (piece.status === "needs_review") card.appendChild(reviewControls(piece));
    if (piece.image_url) card.appendChild(ratingControls(piece));
    return card;
  }

  // A variation says which piece it varies, or it reads as an unrelated piece. Its parent is usually in
  // another batch (a variation batch holds only variations), so the link finds the parent's batch
  // through the piece API (the token is needed, so a plain link cannot) and opens that batch's gallery
  // at the parent's card; a parent on this page is scrolled to instead. The href is the fallback for
  // opening it elsewhere: this page's anchor, or the piece's API URL.
  function variationOf(parentId) {
    const message = el("span", { className: "message", role: "status" });
    const link = el("a", { className: "parent-link", text: parentId, href: inView.has(parentId)
      ? "#" + encodeURIComponent(cardId(parentId)) : "/api/v1/pieces/" + encodeURIComponent(parentId) });
    link.addEventListener("click", (event) => {
      event.preventDefault();
      jumpTo(parentId, message);
    });
    return el("p", { className: "variation-of" }, [document.createTextNode("variation of "), link,
      document.createTextNode(" "), message]);
  }

  async function jumpTo(pieceId, message) {
    if (showCard(pieceId)) {
      history.pushState(null, "", "#" + encodeURIComponent(cardId(pieceId)));  // Back returns here
      return;
    }
    message.className = "message";
    message.textContent = "opening…";
    try {
      const piece = await api("/api/v1/pieces/" + encodeURIComponent(pieceId));
      if (piece.batch_id === batchId) { message.textContent = "not on this page yet"; return; }  // a live run
      location.assign("/gallery/batches/" + encodeURIComponent(piece.batch_id) + "#"
        + encodeURIComponent(cardId(pieceId)));
    } catch (error) {
      message.textContent = error.message;
    }
  }

  // Scroll to a piece's card and mark it (the cards are drawn after the page loads, so the browser's
  // own jump to a #piece-… fragment finds nothing); false when this page does not show the piece.
  function showCard(pieceId) {
    const card = document.getElementById(cardId(pieceId));
    if (!card) return false;
    grid.querySelectorAll("article.jumped").forEach((node) => node.classList.remove("jumped"));
    card.classList.add("jumped");
    card.scrollIntoView({ block: "start" });  // its top: a card can be taller than the window
    card.focus({ preventScroll: true });
    return true;
  }

  // The piece a #piece-… fragment names (a link from a variation in another batch), or null.
  function linkedPiece() {
    if (!location.hash.startsWith("#piece-")) return null;
    try { return decodeURIComponent(location.hash.slice("#piece-".length)); } catch (error) { return null; }
  }

  // A 1-5 rating teaches the recommender (per LoRA and parameter); it counts once per piece and rater,
  // so a second click is answered with the API's 409 message and changes nothing.
  function ratingControls(piece) {
    const message = el("span", { className: "message", role: "status" });
    const buttons = [1, 2, 3, 4, 5].map((n) => {
      const button = el("button", { className: "rate", type: "button", text: String(n), title: "rate " + n + " of 5" });
      button.addEventListener("click", () => rate(piece, n, message));
      return button;
    });
    return el("div", { className: "rating" }, [el("span", { text: "rate: " }), ...buttons, message]);
  }

  async function rate(piece, rating, message) {
    message.className = "message";
    message.textContent = "saving…";
    try {
      const result = await api("/api/v1/pieces/" + encodeURIComponent(piece.id) + "/rating", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ rating: rating }),
      });
      message.className = "message ok";
      message.textContent = "rated " + result.rating + " by " + result.rater;
    } catch (error) {
      message.textContent = error.message;
    }
  }

  // The quality gate's verdict on a text (passed, rewritten, regenerated, fallback, needs_review);
  // its issues in the title. A needs_review hook is never published.
  function gateBadge(what, gate) {
    const issues = (gate.issues || []).map((issue) => issue.rule + ": " + issue.detail).join("\n");
    return el("span", { className: "badge gate gate-" + gate.status, text: what + ": " + gate.status,
      title: issues || "no issues" });
  }

  function reviewControls(piece) {
    const message = el("p", { className: "message", role: "status" });
    const reason = el("textarea", { className: "reason", maxLength: 2000, rows: 2,
      placeholder: "Why is it rejected? (required)" });
    const confirm = el("button", { className: "confirm-reject", type: "button", text: "Confirm reject" });
    const rejectForm = el("div", { className: "reject-form", hidden: true }, [reason, confirm]);
    const approve = el("button", { className: "approve", type: "button", text: "Approve" });
    const reject = el("button", { className: "reject", type: "button", text: "Reject…" });
    approve.addEventListener("click", () => decide(piece, { decision: "approve" }, message));
    reject.addEventListener("click", () => { rejectForm.hidden = false; reason.focus(); });
    confirm.addEventListener("click", () => {
      if (!reason.value.trim()) { message.textContent = "A rejection needs a reason."; return; }
      decide(piece, { decision: "reject", reason: reason.value }, message);
    });
    return el("div", { className: "review" }, [el("div", { className: "actions" }, [approve, reject]),
      rejectForm, message]);
  }

  async function decide(piece, body, message) {
    message.className = "message";
    message.textContent = "saving…";
    try {
      const result = await api("/api/v1/pieces/" + encodeURIComponent(piece.id) + "/review", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const fresh = await api("/api/v1/pieces/" + encodeURIComponent(piece.id));
      const card = renderPiece(fresh);
      const done = el("p", { className: "message ok", role: "status",
        text: result.decision + "d by " + result.reviewer });
      card.appendChild(done);
      grid.querySelector('[data-piece-id="' + CSS.escape(piece.id) + '"]').replaceWith(card);
      load(false);
    } catch (error) {
      message.textContent = error.message;
    }
  }

  // Live updates: while the batch's run goes on, the page follows its job's event stream
  // (GET /api/v1/jobs/{id}/stream) instead of polling. Read with fetch, not EventSource, because the
  // token must travel in the Authorization header; a dropped connection resumes with Last-Event-ID.
  let following = null;
  let runEnded = null;  // what the stream's end event said, kept on the status line

  function parseEvent(block) {
    const event = { event: "message", data: "" };
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;  // heartbeat
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event.event = value;
      else if (field === "data") event.data += value;
      else if (field === "id") event.id = value;
    }
    if (!event.data) return event.id ? event : null;
    try { event.data = JSON.parse(event.data); } catch (e) { return null; }
    return event;
  }

  async function onEvent(event) {
    const data = event.data || {};
    if (event.event === "progress") {
      say("Batch " + Math.round(data.progress) + "% done" + (data.message ? " · " + data.message : ""));
    } else if (event.event === "piece") {
      inView.add(data.piece_id);
      const fresh = await api("/api/v1/pieces/" + encodeURIComponent(data.piece_id));
      const card = renderPiece(fresh);
      const old = grid.querySelector('[data-piece-id="' + CSS.escape(data.piece_id) + '"]');
      if (old) old.replaceWith(card); else grid.appendChild(card);
    } else if (event.event === "end") {
      runEnded = "Batch run " + data.status + (data.error ? ": " + data.error : "");
      say(runEnded);
      await load(false);
      return true;
    }
    return false;
  }

  async function follow(jobId) {
    if (following === jobId) return;
    following = jobId;
    let lastId = null;
    while (following === jobId && sessionStorage.getItem(TOKEN_KEY)) {
      try {
        const response = await fetch("/api/v1/jobs/" + encodeURIComponent(jobId) + "/stream", {
          headers: headers(lastId ? { "Last-Event-ID": lastId } : {}), credentials: "omit", cache: "no-store",
        });
        if (!response.ok) { following = null; return; }  // no such job, or no token: nothing to follow
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const event = parseEvent(buffer.slice(0, cut));
            buffer = buffer.slice(cut + 2);
            if (!event) continue;
            if (event.id) lastId = event.id;
            if (await onEvent(event)) { following = null; return; }
          }
        }
      } catch (error) {
        say("Live updates interrupted (" + error.message + "); reconnecting…");
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }

  // Predicted engagement per planned piece (1.0 = the account's typical post) and the recorded cover,
  // from the analytics API. Without a usable model the reason is shown instead of a number, so a
  // reviewer never reads a guess as a prediction. Failing to load it leaves the gallery as it is.
  // The batch's own platform is the one predicted (the API's default).
  async function showOutlook() {
    let outlook;
    try {
      outlook = await api("/api/v1/analytics/batches/" + encodeURIComponent(batchId) + "/predictions");
    } catch (error) { return; }
    const model = outlook.model || {};
    const simulated = model.simulated ? " · from simulated data" : "";
    for (const card of grid.querySelectorAll("article.piece")) {
      const id = card.dataset.pieceId;
      const predicted = (outlook.predictions || {})[id];
      const cover = (outlook.covers || {})[id];
      const lines = [el("p", { className: "prediction", title: model.reason || "", text: predicted && predicted.predicted != null
        ? "predicted engagement " + Number(predicted.predicted).toFixed(2) + "× typical"
          + (predicted.scheduled ? " at its slot" : " if posted now") + simulated
        : "no prediction: " + (model.reason || "no engagement model") })];
      if (cover) {
        const chosen = (cover.candidates || []).find((c) => c.piece_id === cover.chosen) || {};
        lines.push(el("p", { className: "cover", text: "cover: " + cover.chosen
          + ((chosen.advice || []).length ? " (" + chosen.advice.join("; ") + ")" : "") }));
      }
      card.querySelectorAll(".prediction, .cover").forEach((node) => node.remove());
      card.append(...lines);
    }
  }

  async function load(redraw) {
    if (!sessionStorage.getItem(TOKEN_KEY)) { say("Enter the API token to load the batch."); return; }
    try {
      // A redraw asks for the batch and its pieces in one request (one snapshot: the summary counts
      // the cards below it); following a running batch, only the batch, for its summary.
      const gallery = redraw === false ? null
        : await api("/api/v1/batches/" + encodeURIComponent(batchId) + "/gallery");
      const batch = gallery ? gallery.batch : await api("/api/v1/batches/" + encodeURIComponent(batchId));
      renderSummary(batch);
      if (batch.flow_run_id && batch.status === "running") follow(batch.flow_run_id);
      if (!gallery) return;
      const pieces = gallery.pieces;
      objectUrls.splice(0).forEach((url) => URL.revokeObjectURL(url));
      inView.clear();
      pieces.forEach((piece) => inView.add(piece.id));
      grid.replaceChildren(...pieces.map(renderPiece));
      say(pieces.length + " pieces loaded" + (runEnded ? " · " + runEnded : ""));
      const wanted = linkedPiece();
      if (wanted) showCard(wanted);
      showOutlook();
    } catch (error) {
      if (error.status === 401) sessionStorage.removeItem(TOKEN_KEY);
      say("Could not load the batch: " + error.message);
    }
  }

  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    const reviewer = document.getElementById("reviewer").value.trim();
    if (reviewer) sessionStorage.setItem(REVIEWER_KEY, reviewer); else sessionStorage.removeItem(REVIEWER_KEY);
    document.getElementById("token").value = "";
    load(true);
  });
  document.getElementById("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    following = null;
    grid.replaceChildren();
    summary.replaceChildren();
    say("Token forgotten.");
  });
  document.getElementById("reviewer").value = sessionStorage.getItem(REVIEWER_KEY) || "";
  load(true);
})();
