// Warren's web UI: a small single-page app over the management API (the same calls any
// client makes). Credentials stay in sessionStorage; #/login/user/pass logs in from a URL,
// as RabbitMQ's UI allows.
"use strict";

const state = { auth: sessionStorage.getItem("warren.auth"), timer: null };
const enc = encodeURIComponent;
const $ = (sel) => document.querySelector(sel);

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function num(v) { return v === undefined || v === null ? "" : Number(v).toLocaleString("en"); }
function rate(d) { return d && d.rate !== undefined ? d.rate.toFixed(1) + "/s" : ""; }
function bytes(n) {
  if (n === undefined) return "";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

async function api(method, path, body) {
  const res = await fetch("/api" + path, {
    method, headers: { "Authorization": "Basic " + state.auth, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (res.status === 401) { logout(); throw new Error((data && data.reason) || "Login required"); }
  if (!res.ok) throw new Error((data && data.reason) || res.statusText);
  return data;
}

function table(cols, rows, empty) {
  if (!rows.length) return `<div class="empty">${esc(empty || "Nothing here yet.")}</div>`;
  const head = cols.map((c) => `<th class="${c.num ? "num" : ""}">${esc(c.t)}</th>`).join("");
  const body = rows.map((r) => "<tr>" + cols.map((c) => `<td class="${c.num ? "num" : ""}">${c.f(r)}</td>`).join("") + "</tr>").join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function flash(kind, text) {
  const el = document.createElement("div");
  el.className = "msg " + kind; el.id = "flash"; el.textContent = text;
  const old = $("#flash"); if (old) old.remove();
  $("#main").prepend(el);
}

function formData(form) { return Object.fromEntries(new FormData(form).entries()); }

// --- login ---------------------------------------------------------------------------------

function logout() {
  sessionStorage.removeItem("warren.auth"); state.auth = null;
  $("#nav").hidden = true; $("#who").textContent = "";
  if (!location.hash.startsWith("#/login")) render();
}

function loginPage(error) {
  $("#main").innerHTML = `<div class="login"><h1>Log in</h1>
    ${error ? `<div class="msg err" id="login-error">${esc(error)}</div>` : ""}
    <form class="box" id="login-form">
      <label for="username">Username</label><input id="username" name="username" autocomplete="username">
      <label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password">
      <div class="full"><button type="submit">Log in</button></div></form></div>`;
  $("#login-form").onsubmit = (e) => { e.preventDefault(); const f = formData(e.target); login(f.username, f.password); };
}

async function login(user, pass, then) {
  state.auth = btoa(user + ":" + pass);
  try {
    const me = await api("GET", "/whoami");
    sessionStorage.setItem("warren.auth", state.auth);
    $("#who").innerHTML = `${esc(me.name)} <button id="logout">Log out</button>`;
    $("#logout").onclick = () => { logout(); location.hash = "#/"; };
    $("#nav").hidden = false;
    if (location.hash !== (then || "#/")) location.hash = then || "#/"; else render();
  } catch (e) {
    state.auth = null; sessionStorage.removeItem("warren.auth");
    loginPage(e.message === "Login required" ? "Login failed" : e.message);
  }
}

// --- pages ---------------------------------------------------------------------------------

async function overview() {
  const [o, nodes] = await Promise.all([api("GET", "/overview"), api("GET", "/nodes").catch(() => [])]);
  $("#cluster").textContent = o.cluster_name;
  const t = o.object_totals, q = o.queue_totals, m = o.message_stats;
  const card = (n, l) => `<div class="card"><div class="n">${n}</div><div class="l">${esc(l)}</div></div>`;
  const node = nodes[0];
  return `<h1>Overview</h1><p>Node <b id="node-name">${esc(o.node)}</b> · ${esc(o.product_name)} ${esc(o.product_version)}</p>
    <div class="cards">${card(num(t.connections), "Connections")}${card(num(t.channels), "Channels")}
      ${card(num(t.exchanges), "Exchanges")}${card(num(t.queues), "Queues")}${card(num(t.consumers), "Consumers")}</div>
    <h2>Messages</h2><div class="cards">${card(num(q.messages), "Total")}${card(num(q.messages_ready), "Ready")}
      ${card(num(q.messages_unacknowledged), "Unacked")}${card(rate(m.publish_details), "Publish")}
      ${card(rate(m.deliver_get_details), "Deliver / get")}${card(rate(m.ack_details), "Ack")}</div>
    ${node ? `<h2>Node</h2>${table([
      { t: "Memory", f: (n) => `${bytes(n.mem_used)} of ${bytes(n.mem_limit)}${n.mem_alarm ? " — ALARM" : ""}` },
      { t: "Disk free", f: (n) => `${bytes(n.disk_free)} (limit ${bytes(n.disk_free_limit)})${n.disk_free_alarm ? " — ALARM" : ""}` },
      { t: "File descriptors", f: (n) => `${num(n.fd_used)} of ${num(n.fd_total)}` },
      { t: "Uptime", f: (n) => `${Math.round(n.uptime / 1000)} s` }], [node])}` : ""}
    <h2>Listeners</h2>${table([{ t: "Protocol", f: (l) => esc(l.protocol) }, { t: "Address", f: (l) => esc(l.ip_address) },
      { t: "Port", num: 1, f: (l) => esc(l.port) }], o.listeners)}`;
}

async function connections() {
  const list = await api("GET", "/connections");
  setTimeout(() => document.querySelectorAll("[data-close]").forEach((b) => b.onclick = async () => {
    await api("DELETE", "/connections/" + enc(b.dataset.close)); flash("ok", "Connection closed."); render();
  }));
  return `<h1>Connections</h1>` + table([
    { t: "Name", f: (c) => esc(c.name) + (c.user_provided_name ? `<br><small>${esc(c.user_provided_name)}</small>` : "") },
    { t: "User", f: (c) => esc(c.user) }, { t: "Virtual host", f: (c) => esc(c.vhost) },
    { t: "State", f: (c) => `<span class="state-${esc(c.state)}">${esc(c.state)}</span>` },
    { t: "TLS", f: (c) => (c.ssl ? "yes" : "") }, { t: "Channels", num: 1, f: (c) => num(c.channels) },
    { t: "Client", f: (c) => esc((c.client_properties || {}).product) },
    { t: "", f: (c) => `<button class="danger" data-close="${esc(c.name)}">Close</button>` }], list, "No connections.");
}

async function channels() {
  const list = await api("GET", "/channels");
  return `<h1>Channels</h1>` + table([
    { t: "Channel", f: (c) => esc(c.name) }, { t: "User", f: (c) => esc(c.user) }, { t: "Virtual host", f: (c) => esc(c.vhost) },
    { t: "Mode", f: (c) => [c.confirm ? "confirm" : "", c.transactional ? "tx" : ""].filter(Boolean).join(" ") },
    { t: "Prefetch", num: 1, f: (c) => num(c.prefetch_count) }, { t: "Consumers", num: 1, f: (c) => num(c.consumer_count) },
    { t: "Unacked", num: 1, f: (c) => num(c.messages_unacknowledged) }], list, "No channels.");
}

async function vhostOptions() {
  return (await api("GET", "/vhosts")).map((v) => `<option>${esc(v.name)}</option>`).join("");
}

async function exchanges() {
  const [list, vhosts] = await Promise.all([api("GET", "/exchanges"), vhostOptions()]);
  setTimeout(() => $("#add-exchange").onsubmit = async (e) => {
    e.preventDefault(); const f = formData(e.target);
    try {
      await api("PUT", `/exchanges/${enc(f.vhost)}/${enc(f.name)}`, { type: f.type, durable: f.durable === "true" });
      flash("ok", `Exchange ${f.name} declared.`); render();
    } catch (err) { flash("err", err.message); }
  });
  return `<h1>Exchanges</h1>` + table([
    { t: "Virtual host", f: (x) => esc(x.vhost) },
    { t: "Name", f: (x) => `<a href="#/exchanges/${enc(x.vhost)}/${enc(x.name || "amq.default")}">${esc(x.name || "(AMQP default)")}</a>` },
    { t: "Type", f: (x) => esc(x.type) }, { t: "Features", f: (x) => [x.durable ? "D" : "", x.auto_delete ? "AD" : "", x.internal ? "I" : ""].filter(Boolean).join(" ") },
    { t: "Policy", f: (x) => esc(x.policy) }], list) +
    `<h2>Add an exchange</h2><form class="box" id="add-exchange">
      <label>Virtual host</label><select name="vhost">${vhosts}</select>
      <label>Name</label><input name="name" required>
      <label>Type</label><select name="type"><option>direct</option><option>fanout</option><option>topic</option><option>headers</option></select>
      <label>Durable</label><select name="durable"><option value="true">yes</option><option value="false">no</option></select>
      <div class="full"><button type="submit">Add exchange</button></div></form>`;
}

function publishForm(id) {
  return `<form class="box" id="${id}">
    <label>Routing key</label><input name="routing_key">
    <label>Delivery mode</label><select name="delivery_mode"><option value="1">1 - non-persistent</option><option value="2">2 - persistent</option></select>
    <label>Headers (JSON)</label><input name="headers" placeholder='{"key": "value"}'>
    <label>Payload</label><textarea name="payload"></textarea>
    <div class="full"><button type="submit">Publish message</button></div></form>`;
}

function onPublish(id, vhost, exchange, fixedKey) {
  $("#" + id).onsubmit = async (e) => {
    e.preventDefault(); const f = formData(e.target);
    try {
      const properties = { delivery_mode: Number(f.delivery_mode) };
      if (f.headers) properties.headers = JSON.parse(f.headers);
      const r = await api("POST", `/exchanges/${enc(vhost)}/${enc(exchange)}/publish`,
        { properties, routing_key: fixedKey ?? f.routing_key, payload: f.payload, payload_encoding: "string" });
      flash(r.routed ? "ok" : "err", r.routed ? "Message published." : "Message published, but not routed.");
      if (fixedKey !== undefined) render(); // the queue page: show the new counts
    } catch (err) { flash("err", err.message); }
  };
}

async function exchange(vhost, name) {
  const [x, src] = await Promise.all([api("GET", `/exchanges/${enc(vhost)}/${enc(name)}`),
    api("GET", `/exchanges/${enc(vhost)}/${enc(name)}/bindings/source`)]);
  setTimeout(() => onPublish("publish", vhost, name));
  return `<h1>Exchange <span id="exchange-name">${esc(x.name || "(AMQP default)")}</span></h1>
    <p>Type ${esc(x.type)} · ${x.durable ? "durable" : "transient"} · vhost ${esc(vhost)}</p>
    <h2>Bindings from this exchange</h2>${table([{ t: "To", f: (b) => esc(b.destination) + ` <small>(${esc(b.destination_type)})</small>` },
      { t: "Routing key", f: (b) => esc(b.routing_key) }, { t: "Arguments", f: (b) => esc(JSON.stringify(b.arguments)) }], src, "No bindings.")}
    <h2>Publish message</h2>${publishForm("publish")}`;
}

async function queues() {
  const [list, vhosts] = await Promise.all([api("GET", "/queues"), vhostOptions()]);
  setTimeout(() => $("#add-queue").onsubmit = async (e) => {
    e.preventDefault(); const f = formData(e.target);
    try {
      await api("PUT", `/queues/${enc(f.vhost)}/${enc(f.name)}`, { durable: f.durable === "true", auto_delete: false, arguments: {} });
      flash("ok", `Queue ${f.name} declared.`); render();
    } catch (err) { flash("err", err.message); }
  });
  return `<h1>Queues</h1>` + table([
    { t: "Virtual host", f: (q) => esc(q.vhost) },
    { t: "Name", f: (q) => `<a href="#/queues/${enc(q.vhost)}/${enc(q.name)}">${esc(q.name)}</a>` },
    { t: "Features", f: (q) => [q.durable ? "D" : "", q.auto_delete ? "AD" : "", q.exclusive ? "Excl" : "", q.policy ? "Pol: " + esc(q.policy) : ""].filter(Boolean).join(" ") },
    { t: "State", f: (q) => `<span class="state-${esc(q.state)}">${esc(q.state)}</span>` },
    { t: "Ready", num: 1, f: (q) => num(q.messages_ready) }, { t: "Unacked", num: 1, f: (q) => num(q.messages_unacknowledged) },
    { t: "Total", num: 1, f: (q) => num(q.messages) }, { t: "Consumers", num: 1, f: (q) => num(q.consumers) },
    { t: "Incoming", num: 1, f: (q) => rate((q.message_stats || {}).publish_details) },
    { t: "Deliver / get", num: 1, f: (q) => rate((q.message_stats || {}).deliver_get_details) }], list, "No queues.") +
    `<h2>Add a queue</h2><form class="box" id="add-queue">
      <label>Virtual host</label><select name="vhost">${vhosts}</select>
      <label>Name</label><input name="name" required>
      <label>Durable</label><select name="durable"><option value="true">yes</option><option value="false">no</option></select>
      <div class="full"><button type="submit">Add queue</button></div></form>`;
}

async function queue(vhost, name) {
  const q = await api("GET", `/queues/${enc(vhost)}/${enc(name)}`);
  const base = `/queues/${enc(vhost)}/${enc(name)}`;
  setTimeout(() => {
    onPublish("publish", vhost, "amq.default", name);
    $("#get-form").onsubmit = async (e) => {
      e.preventDefault(); const f = formData(e.target);
      try {
        const msgs = await api("POST", base + "/get", { count: Number(f.count), ackmode: f.ackmode, encoding: "auto", truncate: 50000 });
        $("#got").innerHTML = msgs.length ? msgs.map((m, i) => `<h2>Message ${i + 1}</h2>` + table([
          { t: "Exchange", f: () => esc(m.exchange || "(AMQP default)") }, { t: "Routing key", f: () => esc(m.routing_key) },
          { t: "Redelivered", f: () => (m.redelivered ? "yes" : "no") }, { t: "Properties", f: () => esc(JSON.stringify(m.properties)) },
          { t: "Payload", f: () => `<pre class="payload">${esc(m.payload)}</pre><small>${num(m.payload_bytes)} bytes, ${esc(m.payload_encoding)}</small>` }], [m])).join("")
          : `<div class="empty" id="queue-empty">Queue is empty.</div>`;
      } catch (err) { flash("err", err.message); }
    };
    $("#purge").onclick = async () => { await api("DELETE", base + "/contents"); flash("ok", "Queue purged."); render(); };
    $("#delete").onclick = async () => { await api("DELETE", base); location.hash = "#/queues"; };
  });
  const s = q.message_stats || {};
  return `<h1>Queue <span id="queue-name">${esc(q.name)}</span></h1>
    <p>vhost ${esc(q.vhost)} · ${q.durable ? "durable" : "transient"} · ${esc(q.state)}${q.policy ? " · policy " + esc(q.policy) : ""}</p>
    <div class="cards"><div class="card"><div class="n" id="ready">${num(q.messages_ready)}</div><div class="l">Ready</div></div>
      <div class="card"><div class="n">${num(q.messages_unacknowledged)}</div><div class="l">Unacked</div></div>
      <div class="card"><div class="n">${num(q.consumers)}</div><div class="l">Consumers</div></div>
      <div class="card"><div class="n">${bytes(q.memory)}</div><div class="l">Memory</div></div>
      <div class="card"><div class="n">${rate(s.publish_details)}</div><div class="l">Incoming</div></div></div>
    <h2>Consumers</h2>${table([{ t: "Tag", f: (c) => esc(c.consumer_tag) }, { t: "Channel", f: (c) => esc(c.channel_details.name) },
      { t: "Ack required", f: (c) => (c.ack_required ? "yes" : "no") }, { t: "Prefetch", num: 1, f: (c) => num(c.prefetch_count) },
      { t: "Status", f: (c) => esc(c.activity_status) }], q.consumer_details || [], "No consumers.")}
    <h2>Get messages</h2><form class="box" id="get-form">
      <label>Ack mode</label><select name="ackmode"><option value="ack_requeue_true">Nack message requeue true</option>
        <option value="ack_requeue_false">Automatic ack</option><option value="reject_requeue_true">Reject requeue true</option>
        <option value="reject_requeue_false">Reject requeue false</option></select>
      <label>Messages</label><input name="count" value="1" type="number" min="1">
      <div class="full"><button type="submit">Get message(s)</button></div></form><div id="got"></div>
    <h2>Publish message</h2>${publishForm("publish")}
    <h2>Purge or delete</h2><button id="purge">Purge messages</button> <button class="danger" id="delete">Delete queue</button>`;
}

async function users() {
  const list = await api("GET", "/users");
  setTimeout(() => $("#add-user").onsubmit = async (e) => {
    e.preventDefault(); const f = formData(e.target);
    try { await api("PUT", "/users/" + enc(f.name), { password: f.password, tags: f.tags }); flash("ok", `User ${f.name} added.`); render(); }
    catch (err) { flash("err", err.message); }
  });
  return `<h1>Users</h1>` + table([{ t: "Name", f: (u) => esc(u.name) }, { t: "Tags", f: (u) => esc(u.tags.join(", ")) },
    { t: "Can log in with password", f: (u) => (u.password_hash ? "yes" : "no") }], list) +
    `<h2>Add a user</h2><form class="box" id="add-user"><label>Username</label><input name="name" required>
      <label>Password</label><input name="password" type="password" required>
      <label>Tags</label><input name="tags" placeholder="administrator, monitoring, management">
      <div class="full"><button type="submit">Add user</button></div></form>`;
}

async function vhosts() {
  const list = await api("GET", "/vhosts");
  setTimeout(() => $("#add-vhost").onsubmit = async (e) => {
    e.preventDefault(); const f = formData(e.target);
    try { await api("PUT", "/vhosts/" + enc(f.name), { description: f.description }); flash("ok", `Virtual host ${f.name} added.`); render(); }
    catch (err) { flash("err", err.message); }
  });
  return `<h1>Virtual hosts</h1>` + table([{ t: "Name", f: (v) => esc(v.name) }, { t: "Description", f: (v) => esc(v.description) },
    { t: "Ready", num: 1, f: (v) => num(v.messages_ready) }, { t: "Unacked", num: 1, f: (v) => num(v.messages_unacknowledged) },
    { t: "Total", num: 1, f: (v) => num(v.messages) }], list) +
    `<h2>Add a virtual host</h2><form class="box" id="add-vhost"><label>Name</label><input name="name" required>
      <label>Description</label><input name="description"><div class="full"><button type="submit">Add virtual host</button></div></form>`;
}

async function federation() {
  // (Upstreams are parameters, which only policymakers and administrators may read.)
  const [links, params] = await Promise.all([api("GET", "/federation-links"), api("GET", "/parameters/federation-upstream").catch(() => null)]);
  setTimeout(() => document.querySelectorAll("[data-restart]").forEach((b) => b.onclick = async () => {
    const [vhost, id, node] = JSON.parse(b.dataset.restart);
    await api("DELETE", `/federation-links/vhost/${enc(vhost)}/${enc(id)}/${enc(node)}/restart`); flash("ok", "Link restarting."); render();
  }));
  // URIs are shown as the API gives them: links' without credentials; upstream parameters'
  // with their user name and password masked here.
  const masked = (u) => String(u).replace(/\/\/[^@/?]*@/, "//***@");
  return `<h1>Federation</h1><h2>Links</h2>` + table([
    { t: "Virtual host", f: (l) => esc(l.vhost) }, { t: "Type", f: (l) => esc(l.type) },
    { t: "Exchange / queue", f: (l) => esc(l.exchange || l.queue) }, { t: "Upstream", f: (l) => esc(l.upstream) },
    { t: "URI", f: (l) => esc(l.uri) }, { t: "Node", f: (l) => esc(l.node) },
    { t: "State", f: (l) => `<span class="state-${esc(l.status)}">${esc(l.status)}</span>` + (l.error ? `<br><small>${esc(l.error)}</small>` : "") },
    { t: "Since", f: (l) => esc(l.timestamp) },
    { t: "", f: (l) => `<button data-restart="${esc(JSON.stringify([l.vhost, l.id, l.node]))}">Restart</button>` }], links, "No federation links.") +
    `<h2>Upstreams</h2>` + (params === null ? "<p>Only policymakers and administrators see the upstreams.</p>" : table([{ t: "Virtual host", f: (p) => esc(p.vhost) }, { t: "Name", f: (p) => esc(p.name) },
      { t: "URI", f: (p) => esc([].concat(p.value.uri).map(masked).join(", ")) },
      { t: "Settings", f: (p) => esc(Object.entries(p.value).filter(([k]) => k !== "uri").map(([k, v]) => `${k}: ${v}`).join(", ")) }],
      params, "No upstreams: set federation-upstream parameters (warrenctl set_parameter) and a policy."));
}

// --- routing -------------------------------------------------------------------------------

const routes = [
  [/^#?\/?$/, overview], [/^#\/connections$/, connections], [/^#\/channels$/, channels],
  [/^#\/exchanges$/, exchanges], [/^#\/exchanges\/([^/]+)\/([^/]+)$/, exchange],
  [/^#\/queues$/, queues], [/^#\/queues\/([^/]+)\/([^/]+)$/, queue],
  [/^#\/users$/, users], [/^#\/vhosts$/, vhosts], [/^#\/federation$/, federation],
];

async function render() {
  clearTimeout(state.timer);
  const hash = location.hash || "#/";
  const m = hash.match(/^#\/login\/([^/]+)\/([^/]+)$/);
  if (m) { history.replaceState(null, "", "#/"); return login(decodeURIComponent(m[1]), decodeURIComponent(m[2])); }
  if (!state.auth) return loginPage();
  $("#nav").hidden = false;
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", hash === a.getAttribute("href") || (a.getAttribute("href") !== "#/" && hash.startsWith(a.getAttribute("href")))));
  for (const [re, page] of routes) {
    const r = hash.match(re);
    if (!r) continue;
    try {
      const flashEl = $("#flash");
      $("#main").innerHTML = await page(...r.slice(1).map(decodeURIComponent));
      if (flashEl) $("#main").prepend(flashEl);
    } catch (e) {
      if (state.auth) $("#main").innerHTML = `<div class="msg err">${esc(e.message)}</div>`;
    }
    // Lists refresh every 5 s (the statistics interval); detail pages with forms do not.
    if ([overview, connections, channels].includes(page)) state.timer = setTimeout(render, 5000);
    return;
  }
  $("#main").innerHTML = `<div class="msg err">No such page.</div>`;
}

window.addEventListener("hashchange", () => { const f = $("#flash"); if (f) f.remove(); render(); });
if (state.auth) {
  api("GET", "/whoami").then((me) => {
    $("#who").innerHTML = `${esc(me.name)} <button id="logout">Log out</button>`;
    $("#logout").onclick = () => { logout(); location.hash = "#/"; };
  }).catch(() => {});
}
render();
