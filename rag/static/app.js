// The docrag web page: ask with the key kept in this tab's session storage, stream the answer in, open citations.
// Document text only ever goes into the page as textContent, never as HTML.
"use strict";

const KEY_STORE = "docrag-key";
const $ = (id) => document.getElementById(id);

function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORE);
  return key ? { Authorization: "Bearer " + key } : {};
}

// What a person should read for each kind of refusal; the server's own message follows where it helps.
function explainFailure(status, message) {
  if (status === 401) {
    return "Your API key was not accepted: it may be mistyped, expired or revoked. Paste a valid key above, or ask the administrator for a new one.";
  }
  if (status === 413 || status === 422 || status === 400) return "That question could not be asked: " + message;
  if (status === 404) return "Not found: " + message;
  if (status === 408) return "The question took too long to send. Please try again.";
  if (status >= 500) return "The server could not answer right now. Please try again in a moment. (" + message + ")";
  return "Something went wrong (" + status + "): " + message;
}

async function failureOf(response) {
  let message = response.statusText || "no details";
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) message = body.error.message;
  } catch (ignored) { /* not JSON: keep the status text */ }
  return explainFailure(response.status, message);
}

function showState(state) {
  const result = $("result");
  result.hidden = false;
  result.className = "card " + state;
  $("answer").className = "answer " + state;
}

function showError(text) {
  showState("error");
  $("answer").textContent = text;
  $("explanation").textContent = "";
  $("sources-title").hidden = true;
  $("citations").replaceChildren();
}

function showAnswer(reply) {
  $("answer").textContent = reply.answer;
  if (reply.abstained) {
    showState("unknown");
    $("answer").textContent = "I don't know.";
    $("explanation").textContent =
      "None of the documents you may read answers this" + (reply.reason ? " (" + reply.reason + ")." : ".");
  } else {
    showState("done");
    $("explanation").textContent = "";
  }
  showCitations(reply.citations || []);
}

function showCitations(citations) {
  const list = $("citations");
  list.replaceChildren();
  $("sources-title").hidden = citations.length === 0;
  for (const citation of citations) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "citation";
    button.dataset.chunk = String(citation.chunk_id);
    const n = document.createElement("span");
    n.className = "n";
    n.textContent = "[" + citation.n + "]";
    button.append(n, document.createTextNode(citation.source));
    button.addEventListener("click", () => openPassage(citation.chunk_id));
    item.append(button);
    list.append(item);
  }
}

async function openPassage(chunkId) {
  const panel = $("passage");
  panel.hidden = false;
  $("passage-source").textContent = "Loading the passage\u2026";
  $("passage-heading").textContent = "";
  $("passage-text").textContent = "";
  let response;
  try {
    response = await fetch("/v1/chunks/" + encodeURIComponent(chunkId), { headers: authHeaders() });
  } catch (err) {
    $("passage-source").textContent = "Could not reach the server to open this passage.";
    return;
  }
  if (!response.ok) {
    $("passage-source").textContent =
      response.status === 404 ? "This passage is no longer available to you; the documents may have changed since." : await failureOf(response);
    return;
  }
  const passage = await response.json();
  $("passage-source").textContent = passage.source + (passage.page ? " (page " + passage.page + ")" : "");
  $("passage-heading").textContent = passage.heading || "";
  $("passage-text").textContent = passage.text;
  panel.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

// Server-Sent Events over fetch (EventSource cannot send a POST body or an Authorization header).
async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

async function ask(question) {
  $("passage").hidden = true;
  showState("streaming");
  $("answer").textContent = "";
  $("explanation").textContent = "Reading the documents you may read\u2026";
  $("sources-title").hidden = true;
  $("citations").replaceChildren();
  let response;
  try {
    response = await fetch("/v1/ask", {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders() },
      body: JSON.stringify({ question, stream: true }),
    });
  } catch (err) {
    showError("Could not reach the server. Check that `rag serve` is running and try again.");
    return;
  }
  if (!response.ok) {
    showError(await failureOf(response));
    return;
  }
  let finished = false;
  for await (const { event, data } of sseEvents(response)) {
    if (event === "token") {
      $("answer").textContent += data.text;
    } else if (event === "citations") {
      showCitations(data.citations);
    } else if (event === "done") {
      showAnswer(data);
      finished = true;
    } else if (event === "error") {
      showError(explainFailure(data.code, data.message));
      finished = true;
    }
  }
  if (!finished) showError("The answer was cut off. Please ask again.");
}

// Says whose key this is (and how much it opens), so a person knows it works before asking.
async function checkKey() {
  const hint = $("key-hint");
  let response;
  try {
    response = await fetch("/v1/status", { headers: authHeaders() });
  } catch (err) {
    hint.textContent = "Could not reach the server. Check that `rag serve` is running.";
    return;
  }
  if (response.ok) {
    const status = await response.json();
    const who = status.user ? "You are " + status.user : "You are an anonymous visitor";
    const plural = status.documents === 1 ? " document." : " documents.";
    hint.textContent = who + ", who may read " + status.documents + plural + " The key is kept in this browser tab only.";
  } else if (response.status === 401) {
    hint.textContent = sessionStorage.getItem(KEY_STORE)
      ? "This key was not accepted: it may be mistyped, expired or revoked."
      : "Paste your API key. Ask the administrator for one (rag keys add YOUR-NAME).";
  } else {
    hint.textContent = await failureOf(response);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  const keyInput = $("key");
  keyInput.value = sessionStorage.getItem(KEY_STORE) || "";
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
    checkKey();
  });
  checkKey();
  $("ask-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();  // a key typed but not saved still counts
    if (key) sessionStorage.setItem(KEY_STORE, key);
    const question = $("question").value.trim();
    if (!question) return;
    const button = $("ask");
    button.disabled = true;
    button.textContent = "Asking\u2026";
    try {
      await ask(question);
    } catch (err) {
      showError("Something went wrong while reading the answer. Please ask again.");
    } finally {
      button.disabled = false;
      button.textContent = "Ask";
    }
  });
  $("passage-close").addEventListener("click", () => { $("passage").hidden = true; });
});
