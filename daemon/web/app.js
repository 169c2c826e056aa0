// bittern web page. Plain ES module, no build step, no dependency: it
// speaks the daemon's Transmission RPC (session-id handshake included)
// and keeps one DOM row per torrent, keyed by id. The whole list is read
// once; afterwards only `recently-active` torrents are fetched every 2 s
// and only the cells whose text changed are touched, so 10,000 torrents
// cost what the few active ones cost.

// From the origin: a relative URL would carry credentials typed into the
// address bar (user:pw@host), which fetch() refuses.
const RPC = `${location.origin}/transmission/rpc`;
const POLL_MS = 2000;
const LIST_FIELDS = ["id", "name", "status", "error", "errorString", "percentDone",
  "rateDownload", "rateUpload", "eta", "uploadRatio", "peersConnected", "recheckProgress",
  "metadataPercentComplete"];
const STATES = ["Stopped", "Queued to check", "Checking", "Queued", "Downloading",
  "Queued to seed", "Seeding"];

const $ = (id) => document.getElementById(id);
let sessionId = "";

/** One RPC call; answers the 409 handshake once; throws on a non-success result. */
export async function rpc(method, args = {}) {
  for (let attempt = 0; attempt < 2; attempt++) {
    const resp = await fetch(RPC, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Transmission-Session-Id": sessionId },
      body: JSON.stringify({ method, arguments: args }),
    });
    if (resp.status === 409) {
      sessionId = resp.headers.get("X-Transmission-Session-Id") || "";
      continue;
    }
    if (!resp.ok) throw new Error(`${method}: HTTP ${resp.status}`);
    const body = await resp.json();
    if (body.result !== "success") throw new Error(body.result);
    return body.arguments;
  }
  throw new Error(`${method}: no session id`);
}

// ---- formatting (Transmission's units: 1000-based) ----
const UNITS = ["B", "kB", "MB", "GB", "TB"];
export function bytes(n) {
  let i = 0;
  while (n >= 1000 && i < UNITS.length - 1) { n /= 1000; i++; }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)} ${UNITS[i]}`;
}
const rate = (n) => (n > 0 ? `${bytes(n)}/s` : "");
export function eta(s) {
  if (s < 0) return "";
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}
const ratio = (r) => (r === -1 ? "—" : r === -2 ? "∞" : r.toFixed(2));
const percent = (f) => `${Math.floor(f * 1000) / 10}%`;

function message(text, kind = "error") {
  const m = $("message");
  m.textContent = text;
  m.className = kind;
  m.hidden = false;
  clearTimeout(message.timer);
  message.timer = setTimeout(() => { m.hidden = true; }, kind === "error" ? 15000 : 5000);
}

// ---- the list: one row per torrent, keyed by id ----
const rows = new Map(); // id -> { el, cells, values }
const COLUMNS = ["name", "progress", "state", "down", "up", "eta", "ratio", "peers"];

function makeRow(id) {
  const el = document.createElement("div");
  el.className = "row";
  el.setAttribute("role", "row");
  el.dataset.id = id;
  const cells = {};
  for (const c of COLUMNS) {
    const span = document.createElement("span");
    span.className = c;
    if (["down", "up", "eta", "ratio", "peers"].includes(c)) span.classList.add("num");
    el.append(span);
    cells[c] = span;
  }
  cells.progress.className = "bar";
  cells.fill = document.createElement("i");
  cells.label = document.createElement("b");
  cells.progress.append(cells.fill, cells.label);
  const actions = document.createElement("span");
  actions.className = "actions";
  for (const [act, text] of [["toggle", "Stop"], ["remove", "Remove"]]) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.act = act;
    b.textContent = text;
    actions.append(b);
  }
  cells.toggle = actions.firstChild;
  el.append(actions);
  return { el, cells, values: {} };
}

/** Sets `key`'s text only when it changed (most ticks change nothing). */
function set(row, key, text) {
  if (row.values[key] !== text) {
    row.values[key] = text;
    row.cells[key].textContent = text;
  }
}

function update(row, t) {
  const checking = t.status === 2;
  const done = checking ? t.recheckProgress : t.percentDone;
  // A magnet link whose metadata is still coming: no size to show yet.
  const fetching = t.status === 4 && t.metadataPercentComplete < 1;
  const state = t.error ? `Error: ${t.errorString}`
    : fetching ? "Fetching metadata" : STATES[t.status] ?? "?";
  set(row, "name", t.name);
  set(row, "label", checking ? `${percent(done)} checked` : percent(done));
  set(row, "state", state);
  set(row, "down", rate(t.rateDownload));
  set(row, "up", rate(t.rateUpload));
  set(row, "eta", eta(t.eta));
  set(row, "ratio", ratio(t.uploadRatio));
  set(row, "peers", String(t.peersConnected));
  set(row, "toggle", t.status === 0 ? "Start" : "Stop");
  const width = `${(done * 100).toFixed(1)}%`;
  if (row.values.width !== width) { row.values.width = width; row.cells.fill.style.width = width; }
  const cls = `row state-${t.error ? "error" : t.status}${row.selected ? " selected" : ""}`;
  if (row.values.cls !== cls) { row.values.cls = cls; row.el.className = cls; }
  row.el.title = t.name;
  row.status = t.status;
  row.name = t.name;
}

/** Turns a `format: table` reply into objects. */
function objects(table) {
  const [keys, ...data] = table;
  return data.map((r) => Object.fromEntries(keys.map((k, i) => [k, r[i]])));
}

const nextFrame = () => new Promise((r) => requestAnimationFrame(() => r()));

/** Applies torrents (new rows appended in id order, a frame's worth at a time). */
async function apply(list) {
  const fresh = [];
  for (const t of list) {
    let row = rows.get(t.id);
    if (!row) {
      row = makeRow(t.id);
      rows.set(t.id, row);
      fresh.push(row);
    }
    update(row, t);
  }
  const box = $("rows");
  for (let i = 0; i < fresh.length; i += 1000) {
    const frag = document.createDocumentFragment();
    for (const row of fresh.slice(i, i + 1000)) frag.append(row.el);
    box.append(frag);
    if (i + 1000 < fresh.length) await nextFrame();
  }
  $("empty").hidden = rows.size > 0;
}

function drop(ids) {
  for (const id of ids) {
    const row = rows.get(id);
    if (!row) continue;
    row.el.remove();
    rows.delete(id);
    if (selected === id) closeDetails();
  }
  $("empty").hidden = rows.size > 0;
}

// ---- polling ----
let timer = 0;
async function poll() {
  clearTimeout(timer);
  try {
    const got = await rpc("torrent-get", { ids: "recently-active", format: "table", fields: LIST_FIELDS });
    await apply(objects(got.torrents));
    drop(got.removed || []);
    const s = await rpc("session-stats");
    $("status").textContent = `${rows.size} torrents · ↓ ${rate(s.downloadSpeed) || "0 B/s"} · ↑ ${rate(s.uploadSpeed) || "0 B/s"}`;
    if (selected !== null) await refreshDetails();
  } catch (e) {
    $("status").textContent = `cannot reach the daemon: ${e.message}`;
  }
  timer = setTimeout(poll, POLL_MS);
}

// ---- details: files (wanted toggles) and peers ----
let selected = null;
let fileItems = [];

function closeDetails() {
  const row = rows.get(selected);
  if (row) {
    row.el.classList.remove("selected");
    row.selected = false;
    row.values.cls = "";
  }
  selected = null;
  $("details").hidden = true;
}

async function openDetails(id) {
  if (selected !== null) closeDetails();
  selected = id;
  const row = rows.get(id);
  row.selected = true;
  row.el.classList.add("selected");
  $("d-name").textContent = row.name;
  $("d-files").replaceChildren();
  fileItems = [];
  $("details").hidden = false;
  await refreshDetails();
}

async function refreshDetails() {
  const id = selected;
  const got = await rpc("torrent-get", { ids: [id], fields: ["id", "files", "fileStats", "peers"] });
  const t = got.torrents[0];
  if (!t || id !== selected) return;
  if (fileItems.length !== t.files.length) {
    fileItems = t.files.map((f, i) => {
      const li = document.createElement("li");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.dataset.index = i;
      box.setAttribute("aria-label", `download ${f.name}`);
      const name = document.createElement("span");
      name.textContent = f.name;
      const pct = document.createElement("span");
      pct.className = "num";
      li.append(box, name, pct);
      return { li, box, pct };
    });
    $("d-files").replaceChildren(...fileItems.map((x) => x.li));
  }
  t.files.forEach((f, i) => {
    const item = fileItems[i];
    item.box.checked = t.fileStats[i].wanted;
    item.pct.textContent = `${percent(f.length ? f.bytesCompleted / f.length : 1)} of ${bytes(f.length)}`;
  });
  const peers = t.peers.map((p) => {
    const tr = document.createElement("tr");
    for (const v of [`${p.address}:${p.port}`, p.clientName, p.flagStr, percent(p.progress),
      rate(p.rateToClient), rate(p.rateToPeer)]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    return tr;
  });
  if (peers.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 6;
    td.textContent = "no peers connected";
    tr.append(td);
    peers.push(tr);
  }
  $("d-peers").replaceChildren(...peers);
}

// ---- actions ----
async function act(fn, ok) {
  try {
    const out = await fn();
    if (ok) message(ok(out), "info");
  } catch (e) {
    message(e.message);
  }
  poll();
}

function added(out) {
  const t = out["torrent-added"] || out["torrent-duplicate"];
  return out["torrent-added"] ? `added ${t.name}` : `${t.name} is already there`;
}

$("rows").addEventListener("click", (ev) => {
  const rowEl = ev.target.closest(".row");
  if (!rowEl) return;
  const id = Number(rowEl.dataset.id);
  const button = ev.target.closest("button");
  if (button?.dataset.act === "toggle") {
    const method = rows.get(id).status === 0 ? "torrent-start" : "torrent-stop";
    act(() => rpc(method, { ids: [id] }));
  } else if (button?.dataset.act === "remove") {
    const dlg = $("confirm");
    $("c-name").textContent = rows.get(id).name;
    dlg.returnValue = "cancel";
    dlg.onclose = () => {
      if (dlg.returnValue === "keep" || dlg.returnValue === "delete") {
        act(() => rpc("torrent-remove", { ids: [id], "delete-local-data": dlg.returnValue === "delete" }),
          () => "removed");
      }
    };
    dlg.showModal();
  } else if (selected === id) {
    closeDetails();
  } else {
    openDetails(id).catch((e) => message(e.message));
  }
});

$("d-close").addEventListener("click", closeDetails);

$("d-files").addEventListener("change", (ev) => {
  const i = Number(ev.target.dataset.index);
  const key = ev.target.checked ? "files-wanted" : "files-unwanted";
  act(() => rpc("torrent-set", { ids: [selected], [key]: [i] }));
});

$("add-magnet").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const link = $("magnet").value.trim();
  if (!link) return;
  act(async () => {
    const out = await rpc("torrent-add", { filename: link });
    $("magnet").value = "";
    return out;
  }, added);
});

function base64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).split(",", 2)[1] || "");
    r.onerror = () => reject(new Error(`cannot read ${file.name}`));
    r.readAsDataURL(file);
  });
}

$("upload").addEventListener("change", async (ev) => {
  const files = [...ev.target.files];
  ev.target.value = "";
  for (const f of files) {
    await act(async () => rpc("torrent-add", { metainfo: await base64(f) }), added);
  }
});

$("limits").addEventListener("submit", (ev) => {
  ev.preventDefault();
  act(() => rpc("session-set", {
    "speed-limit-down-enabled": $("down-on").checked,
    "speed-limit-down": Math.max(0, Math.round(Number($("down").value) || 0)),
    "speed-limit-up-enabled": $("up-on").checked,
    "speed-limit-up": Math.max(0, Math.round(Number($("up").value) || 0)),
  }), () => "speed limits saved (the daemon applies them from its next start)");
});

// ---- start: the whole list once, then recently-active ----
async function start() {
  try {
    const s = await rpc("session-get", { fields: ["speed-limit-down", "speed-limit-down-enabled",
      "speed-limit-up", "speed-limit-up-enabled", "version"] });
    $("down").value = s["speed-limit-down"];
    $("down-on").checked = s["speed-limit-down-enabled"];
    $("up").value = s["speed-limit-up"];
    $("up-on").checked = s["speed-limit-up-enabled"];
    document.title = `bittern ${s.version}`;
    const all = await rpc("torrent-get", { format: "table", fields: LIST_FIELDS });
    await apply(objects(all.torrents));
    document.body.dataset.ready = "1";
  } catch (e) {
    message(e.message);
  }
  timer = setTimeout(poll, POLL_MS);
}

start();
