// Lamina's web UI. Plain JavaScript, no dependencies, no build step.
//
// Safety rule: text from users, documents, models and the server is only ever put in the
// page as text (textContent, Node.append of strings, option.text): never as HTML. Nothing in
// this file uses innerHTML, outerHTML, insertAdjacentHTML, document.write or eval, and the
// Content-Security-Policy the server sends forbids inline scripts anyway.
//
// The API key is kept in sessionStorage (this tab only, cleared when it closes; not
// localStorage, which persists on disk) and sent only in the Authorization header.
"use strict";

(() => {
  const KEY_SLOT = "lamina.apiKey";
  const $ = (id) => document.getElementById(id);
  const state = {
    key: sessionStorage.getItem(KEY_SLOT),
    me: null,
    history: [],
    busy: false,
  };

  // -- DOM helpers: text only --------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else if (name in node && typeof value !== "string") node[name] = value;
      else node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  function showAlert(message) {
    const alert = $("alert");
    alert.textContent = message;
    alert.hidden = !message;
  }

  function formatBytes(n) {
    if (n === null || n === undefined) return "";
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  }

  // -- the API -----------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    if (state.key) h.Authorization = `Bearer ${state.key}`;
    return h;
  }

  async function failure(response) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch (_) {
      // not JSON: keep the status line
    }
    if (response.status === 401) signOut("Your key was refused: " + message);
    return new ApiError(response.status, message);
  }

  async function api(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = headers(opts.headers);
    const response = await fetch(path, opts);
    if (!response.ok) throw await failure(response);
    return response.json();
  }

  async function postJson(path, body) {
    return api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  // Server-sent events over fetch (EventSource can neither POST nor send a header).
  async function* events(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify(body),
    });
    if (!response.ok) throw await failure(response);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
        }
        const text = data.join("\n");
        if (text === "[DONE]") return;
        if (text) yield { name, data: JSON.parse(text) };
      }
    }
  }

  // -- signing in --------------------------------------------------------------------------
  function signOut(message) {
    state.key = null;
    sessionStorage.removeItem(KEY_SLOT);
    $("app").hidden = true;
    $("logout").hidden = true;
    $("who").textContent = "";
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("api-key").focus();
  }

  async function start() {
    let me;
    try {
      const response = await fetch("/v1/me", { headers: headers() });
      if (response.status === 401) {
        signOut(state.key ? "Your key was refused." : "");
        return;
      }
      if (!response.ok) throw await failure(response);
      me = await response.json();
    } catch (error) {
      showAlert(`Cannot reach the server: ${error.message}`);
      return;
    }
    state.me = me;
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = !me.auth;
    $("who").textContent = me.auth
      ? `Signed in as ${me.key}${me.admin ? " (admin)" : ""}`
      : "Local mode: no API keys";
    fillSelect($("model"), me.models.map((m, i) => [m, i === 0 ? `${m} (default)` : m]));
    fillSelect($("strategy"), me.strategies.map((s) => [s, s]));
    await Promise.all([refreshCollections(), refreshDocuments()]);
    $("question").focus();
  }

  function fillSelect(select, pairs, keep) {
    const previous = keep ? select.value : null;
    select.replaceChildren(...pairs.map(([value, label]) => el("option", { value, text: label })));
    if (previous !== null && pairs.some(([v]) => v === previous)) select.value = previous;
  }

  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return;
    state.key = key;
    $("api-key").value = "";
    const response = await fetch("/v1/me", { headers: headers() });
    if (!response.ok) {
      signOut("That key was refused. Check it and try again.");
      return;
    }
    sessionStorage.setItem(KEY_SLOT, key);
    await start();
  });

  $("logout").addEventListener("click", () => signOut("Key forgotten."));

  // -- collections and documents -------------------------------------------------------------
  async function refreshCollections() {
    const list = await api("/v1/collections");
    const pairs = [["", "All collections"]].concat(
      list.data.map((c) => [c.name, c.own ? c.name : `${c.name} (shared)`]),
    );
    fillSelect($("collection"), pairs, true);
    $("collection-names").replaceChildren(
      ...list.data.filter((c) => c.own).map((c) => el("option", { value: c.name })),
    );
  }

  async function refreshDocuments() {
    const list = await api("/v1/documents");
    const items = list.data.map((doc) => {
      const open = el("button", {
        type: "button",
        class: "name quiet",
        text: doc.name,
        title: `${doc.collection} · ${formatBytes(doc.size)}`,
        onclick: () => openSource(doc.id, 0, null, doc.name),
      });
      const where = el("span", { class: "meta", text: doc.own ? doc.collection : `${doc.collection} (shared)` });
      const remove = doc.own
        ? el("button", {
            type: "button",
            class: "quiet",
            text: "Delete",
            "aria-label": `Delete ${doc.name}`,
            onclick: () => removeDocument(doc),
          })
        : null;
      return el("li", { "data-id": doc.id }, open, where, remove);
    });
    if (!items.length) items.push(el("li", { class: "hint", text: "No documents yet: upload some." }));
    $("documents").replaceChildren(...items);
  }

  async function removeDocument(doc) {
    if (!window.confirm(`Delete ${doc.name}? It will no longer be searched.`)) return;
    try {
      await api(`/v1/documents/${encodeURIComponent(doc.id)}`, { method: "DELETE" });
      showAlert("");
      await Promise.all([refreshDocuments(), refreshCollections()]);
      $("documents").focus();
    } catch (error) {
      showAlert(error.message);
    }
  }

  // -- uploads and ingest jobs ---------------------------------------------------------------
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer && event.dataTransfer.files.length) upload(event.dataTransfer.files);
  });
  drop.addEventListener("click", () => $("files").click());
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      $("files").click();
    }
  });
  $("upload").addEventListener("click", () => {
    const files = $("files").files;
    if (!files.length) {
      showAlert("Choose one or more files first.");
      return;
    }
    upload(files);
  });

  async function upload(files) {
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    form.append("collection", $("upload-collection").value.trim() || "default");
    let job;
    try {
      job = await api("/v1/documents", { method: "POST", body: form });
      showAlert("");
    } catch (error) {
      showAlert(`Upload refused: ${error.message}`);
      return;
    }
    $("files").value = "";
    const item = el("li", { "data-job": job.id });
    $("jobs").prepend(item);
    renderJob(item, job);
    while (job.state === "queued" || job.state === "running") {
      await new Promise((resolve) => setTimeout(resolve, 400));
      try {
        job = await api(`/v1/jobs/${encodeURIComponent(job.id)}`);
      } catch (error) {
        showAlert(error.message);
        return;
      }
      renderJob(item, job);
    }
    await Promise.all([refreshDocuments(), refreshCollections()]);
  }

  function renderJob(item, job) {
    const title = el("div", { class: "job-state", text: `Upload into ${job.collection}: ${job.state} (${job.done}/${job.total})` });
    const bar = el("progress", { max: Math.max(1, job.total), value: job.done, "aria-label": "Ingest progress" });
    const files = el(
      "ul",
      { class: "job-files" },
      ...job.files.map((f) => {
        const what = f.state === "done"
          ? `done: ${f.documents} document${f.documents === 1 ? "" : "s"}, ${f.chunks} chunks`
          : f.state;
        return el(
          "li",
          { class: `file-${f.state}` },
          `${f.name}: ${what}`,
          f.error ? el("div", { class: "file-error", text: f.error }) : null,
        );
      }),
    );
    item.replaceChildren(title, bar, files);
    item.dataset.state = job.state;
  }

  // -- asking --------------------------------------------------------------------------------
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("ask-form").requestSubmit();
    }
  });
  $("reset").addEventListener("click", () => {
    state.history = [];
    $("transcript").replaceChildren();
    $("question").focus();
  });

  $("ask-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = $("question").value.trim();
    if (!question || state.busy) return;
    state.busy = true;
    $("send").disabled = true;
    const turn = newTurn(question);
    $("question").value = "";
    const body = {
      question,
      strategy: $("strategy").value,
      model: $("model").value,
      history: state.history.slice(-8),
      stream: true,
    };
    const collection = $("collection").value;
    if (collection) body.collection = collection;
    try {
      for await (const { name, data } of events("/v1/ask", body)) {
        if (name === "token") turn.token(data.text, data.final);
        else if (name === "retry") turn.retry(data.reason);
        else if (name === "answer") {
          turn.done(data);
          state.history.push(data.query);
          renderTrace(question, data);
        } else if (name === "error") throw new ApiError(0, data.error.message);
      }
    } catch (error) {
      turn.fail(error.message);
    } finally {
      state.busy = false;
      $("send").disabled = false;
      $("question").focus();
    }
  });

  function newTurn(question) {
    const answer = el("p", { class: "answer", "aria-busy": "true" });
    const draft = el("span", { class: "draft" });
    const finalText = el("span");
    answer.append(finalText, draft);
    const extra = el("div", { class: "extra" });
    const item = el("li", { class: "turn" }, el("p", { class: "question", text: question }), answer, extra);
    $("transcript").append(item);
    item.scrollIntoView({ block: "end" });
    return {
      token(text, final) {
        if (final) {
          draft.textContent = "";
          finalText.textContent = text;
        } else {
          draft.append(text);
        }
      },
      retry(reason) {
        draft.textContent = "";  // the draft is withdrawn: its sentences were not supported
        extra.replaceChildren(el("p", { class: "hint", text: `Retrying: ${reason}` }));
      },
      done(result) {
        answer.removeAttribute("aria-busy");
        renderAnswer(answer, result);
        extra.replaceChildren(...answerExtras(result));
      },
      fail(message) {
        answer.removeAttribute("aria-busy");
        answer.classList.add("not-found");
        answer.textContent = `Error: ${message}`;
      },
    };
  }

  // The answer's text with each [n] a button opening the cited span.
  function renderAnswer(node, result) {
    node.replaceChildren();
    node.classList.toggle("not-found", !result.found);
    const byN = new Map(result.citations.map((c) => [c.n, c]));
    const pattern = /\[(\d+)\]/g;
    const text = result.answer;
    let last = 0;
    let match;
    while ((match = pattern.exec(text)) !== null) {
      node.append(text.slice(last, match.index));
      const citation = byN.get(Number(match[1]));
      if (citation) {
        const where = citation.page ? `, page ${citation.page}` : "";
        node.append(
          el("button", {
            type: "button",
            class: "cite",
            text: `[${citation.n}]`,
            "aria-label": `Source ${citation.n}: ${citation.source}${where}`,
            onclick: () => openSource(citation.document_id, citation.start, citation.end, citation.source),
          }),
        );
      } else {
        node.append(match[0]);
      }
      last = pattern.lastIndex;
    }
    node.append(text.slice(last));
  }

  function answerExtras(result) {
    const parts = [];
    if (!result.found && result.sources.length) {
      parts.push(el("p", { class: "meta", text: "Closest sources:" }));
      const seen = new Set();
      const items = [];
      for (const s of result.sources) {
        const id = `${s.document_id}:${s.start}`;
        if (seen.has(id)) continue;
        seen.add(id);
        const where = s.page ? `, page ${s.page}` : "";
        items.push(
          el(
            "li",
            {},
            el("button", {
              type: "button",
              text: `${s.source}${where}`,
              onclick: () => openSource(s.document_id, s.start, s.end, s.source),
            }),
          ),
        );
      }
      parts.push(el("ul", { class: "closest" }, ...items));
    }
    const u = result.usage;
    const cost = u.cost_usd === null ? "cost unknown" : `$${u.cost_usd.toFixed(4)}`;
    const total = result.timings_ms.total !== undefined ? `${Math.round(result.timings_ms.total)} ms` : "";
    parts.push(
      el("p", {
        class: "meta answer-meta",
        text: `${result.strategy} · ${total} · ${u.prompt_tokens} + ${u.completion_tokens} tokens · ${cost}`,
      }),
    );
    if (result.run_id) parts.push(feedbackControls(result.run_id));
    return parts;
  }

  function feedbackControls(runId) {
    const box = el("div", { class: "feedback" });
    const note = el("span", { class: "meta", role: "status" });
    const send = async (rating, fix) => {
      try {
        await postJson("/v1/feedback", fix ? { run_id: runId, rating, fix } : { run_id: runId, rating });
        box.replaceChildren(el("span", { class: "meta", role: "status", text: `Thanks: rated ${rating}${fix ? " with a correction" : ""}.` }));
      } catch (error) {
        note.textContent = error.message;
      }
    };
    const up = el("button", { type: "button", class: "quiet", text: "Good answer", onclick: () => send("up") });
    const down = el("button", {
      type: "button",
      class: "quiet",
      text: "Bad answer",
      onclick: () => {
        const id = `fix-${runId}`;
        const area = el("textarea", { id, rows: 2, placeholder: "The right answer (optional)" });
        const submit = el("button", {
          type: "button",
          text: "Send rating",
          onclick: () => send("down", area.value.trim() || null),
        });
        box.replaceChildren(el("label", { for: id, text: "Correction (optional)" }), area, submit, note);
        area.focus();
      },
    });
    box.append(up, down, note);
    return box;
  }

  // -- the source passage --------------------------------------------------------------------
  async function openSource(documentId, start, end, label) {
    const params = new URLSearchParams({ start: String(start), context: "400" });
    if (end !== null && end !== undefined) params.set("end", String(end));
    let span;
    try {
      span = await api(`/v1/documents/${encodeURIComponent(documentId)}/text?${params}`);
    } catch (error) {
      showAlert(`Cannot open ${label}: ${error.message}`);
      return;
    }
    const page = span.page ? `page ${span.page}, ` : "";
    $("source-meta").textContent = `${span.name} (${span.collection}), ${page}characters ${span.start}–${span.end} of ${span.length}`;
    const mark = el("mark", { text: span.text });
    $("source-text").replaceChildren(
      span.start > span.before.length ? "…" : "",
      span.before,
      mark,
      span.after,
      span.end + span.after.length < span.length ? "…" : "",
    );
    const panel = $("source");
    panel.hidden = false;
    panel.focus();
    mark.scrollIntoView({ block: "center" });
  }

  $("close-source").addEventListener("click", () => {
    $("source").hidden = true;
    $("question").focus();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("source").hidden) $("close-source").click();
  });

  // -- the trace of the last answer ---------------------------------------------------------
  function renderTrace(question, result) {
    const total = result.timings_ms.total || 0;
    const stages = Object.entries(result.timings_ms).filter(([name]) => name !== "total");
    const rows = stages.map(([name, ms]) =>
      el(
        "tr",
        {},
        el("th", { scope: "row", text: name }),
        el("td", { text: `${ms.toFixed(1)} ms` }),
        el("td", {}, el("meter", { min: 0, max: Math.max(total, 0.001), value: ms, "aria-label": `${name} time` })),
      ),
    );
    const cited = new Set(result.citations.map((c) => c.n));
    const passages = result.sources.map((s) =>
      el(
        "tr",
        {},
        el("td", { text: `[${s.n}]${cited.has(s.n) ? " cited" : ""}` }),
        el("td", { text: `${s.source}${s.page ? `, p. ${s.page}` : ""}` }),
        el("td", { text: s.score.toFixed(3) }),
      ),
    );
    const checks = result.citations.map((c) =>
      el("li", { text: `[${c.n}] ${c.verified ? "verified" : "NOT verified"}: “${c.quote}”` }),
    );
    $("trace-body").replaceChildren(
      el(
        "dl",
        {},
        el("dt", { text: "Question" }), el("dd", { text: question }),
        el("dt", { text: "Searched" }), el("dd", { text: result.query }),
        el("dt", { text: "Strategy" }), el("dd", { text: result.strategy }),
        el("dt", { text: "Found" }), el("dd", { text: result.found ? "yes" : "no" }),
        el("dt", { text: "Tokens" }), el("dd", { text: `${result.usage.prompt_tokens} prompt + ${result.usage.completion_tokens} completion` }),
        el("dt", { text: "Run" }), el("dd", { text: result.run_id || "not recorded" }),
      ),
      el("h3", { text: "Steps" }),
      el("table", { class: "trace" },
        el("thead", {}, el("tr", {}, el("th", { text: "step" }), el("th", { text: "time" }), el("th", { text: "share" }))),
        el("tbody", {}, ...rows),
        el("tfoot", {}, el("tr", {}, el("th", { text: "total" }), el("td", { text: `${total.toFixed(1)} ms` }), el("td")))),
      el("h3", { text: "Passages retrieved" }),
      el("table", { class: "trace" },
        el("thead", {}, el("tr", {}, el("th", { text: "n" }), el("th", { text: "source" }), el("th", { text: "score" }))),
        el("tbody", {}, ...passages)),
      el("h3", { text: "Citations checked" }),
      checks.length ? el("ul", {}, ...checks) : el("p", { class: "hint", text: "None." }),
    );
  }

  start();
})();
