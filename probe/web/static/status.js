// The status page's script: live updates from the event stream, and opt-in pop-ups.
// It only enhances the page the server rendered: without it the page reloads itself
// every 30 seconds and shows the same. It loads nothing from anywhere else, and takes
// every word it shows from the page (the JSON in #status-data).
(() => {
  "use strict";
  window.probeStatusLoadedAt = Date.now(); // a reload starts this afresh (the tests look)
  const dataNode = document.getElementById("status-data");
  if (!dataNode) return;
  const words = JSON.parse(dataNode.textContent);
  const FOLLOW_KEY = "probe.status.follow";
  const PARTS_EVERY_MS = 60000; // bars, figures and "last probe" are fetched this often
  const known = {}; // "flow/destination" -> the state last shown
  let last = null; // the newest state event
  let refreshing = false;
  let reloading = false;

  const followed = () => {
    try {
      const list = JSON.parse(localStorage.getItem(FOLLOW_KEY) || "[]");
      return Array.isArray(list) ? list : [];
    } catch (_) {
      return []; // storage off or garbled: follow nothing
    }
  };
  const setFollowed = (list) => {
    try {
      localStorage.setItem(FOLLOW_KEY, JSON.stringify(list));
    } catch (_) {
      // storage off: the choice lasts as long as the page
    }
  };

  // "2026-11-26T06:22:23+01:00" is the wall clock of the config's zone, as the server
  // writes it; shown the way the server shows times ("26 Nov 2026 06:22").
  const formatTime = (iso) => {
    const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(iso || "");
    if (!m) return iso || "";
    const month = words.months[Number(m[2]) - 1];
    const day = Number(m[3]);
    const date = words.lang === "da" ? `${day}. ${month} ${m[1]}` : `${day} ${month} ${m[1]}`;
    return `${date} ${m[4]}:${m[5]}`;
  };
  const since = (iso) => (iso ? words.since.replace("{time}", formatTime(iso)) : "");

  const setState = (el, base, state) => {
    el.setAttribute("data-state", state);
    el.className = `${base} state-${state}`;
  };
  const setBadge = (el, state) => {
    if (!el) return;
    el.className = `badge state-${state}`;
    el.querySelector(".sym").textContent = words.symbols[state];
    el.querySelector(".word").textContent = words.states[state];
  };
  const sections = () => Array.from(document.querySelectorAll("section.flow"));
  const sectionOf = (name) => sections().find((s) => s.getAttribute("data-flow") === name);
  const rowOf = (section, dest) =>
    Array.from(section.querySelectorAll("tr.dest")).find(
      (r) => r.getAttribute("data-destination") === dest,
    );

  const popup = (flow, dest, section, row) => {
    if (!followed().includes(flow.name)) return;
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    const state = words.states[dest.state];
    const what = dest.name ? `${row.getAttribute("data-name")}: ${state}` : state;
    const body = [what, since(dest.down_since)].filter(Boolean).join(" ");
    const title = words.notifyTitle.replace("{name}", section.getAttribute("data-name"));
    try {
      new Notification(title, { body, tag: `${flow.name}/${dest.name}`, lang: words.lang });
    } catch (_) {
      // some browsers allow pop-ups only from a service worker: nothing to do then
    }
  };

  const setOverall = (overall) => {
    const el = document.getElementById("overall");
    setState(el, "overall", overall.state);
    el.querySelector(".sym").textContent = words.symbols[overall.state];
    el.querySelector(".text").textContent = words.overall[overall.summary];
    el.querySelector(".extra").textContent = overall.maintenance ? words.overall.maintenance : "";
  };

  const applyDestination = (flow, dest, section, notify) => {
    const row = rowOf(section, dest.name);
    if (!row) return false;
    const key = `${flow.name}/${dest.name}`;
    const before = key in known ? known[key] : row.getAttribute("data-state");
    setState(row, "dest", dest.state);
    setBadge(row.querySelector(".badge"), dest.state);
    const sinceNode = row.querySelector(".since");
    if (sinceNode) sinceNode.textContent = since(dest.down_since);
    known[key] = dest.state;
    if (notify && before !== dest.state) popup(flow, dest, section, row);
    return true;
  };

  const apply = (data, notify) => {
    let complete = data.flows.length === sections().length;
    for (const flow of data.flows) {
      const section = sectionOf(flow.name);
      if (!section) {
        complete = false;
        continue;
      }
      setState(section, "flow", flow.state);
      setBadge(section.querySelector(".flow-head .badge"), flow.state);
      for (const dest of flow.destinations) {
        complete = applyDestination(flow, dest, section, notify) && complete;
      }
    }
    setOverall(data.overall);
    if (!complete && !reloading) {
      reloading = true; // the config was reloaded: flows came or went
      location.reload();
    }
  };

  const signature = (data) => data.notices.map((n) => `${n.id}@${n.updated_at}`).join(" ");
  const noticesChanged = (data) => {
    const part = document.querySelector('[data-part="notices"]');
    return Boolean(part) && part.getAttribute("data-notices") !== signature(data);
  };

  // Fetch this page again and swap each [data-part] for its fresh copy: the notices,
  // the "updated" line and each flow's section (bars, figures, incident marks).
  const refreshParts = () => {
    if (refreshing) return;
    refreshing = true;
    fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then((response) => {
        if (!response.ok) throw new Error(String(response.status));
        return response.text();
      })
      .then((html) => {
        const fresh = new DOMParser().parseFromString(html, "text/html");
        const focused = document.activeElement ? document.activeElement.id : "";
        for (const node of fresh.querySelectorAll("[data-part]")) {
          const name = node.getAttribute("data-part");
          const old = Array.from(document.querySelectorAll("[data-part]")).find(
            (n) => n.getAttribute("data-part") === name,
          );
          if (old) old.replaceWith(document.importNode(node, true));
        }
        bindFollow();
        if (last) apply(last, false);
        const again = focused && document.getElementById(focused);
        if (again) again.focus();
        if (last && noticesChanged(last)) setTimeout(refreshParts, 3000); // cached: try again
      })
      .catch(() => {})
      .finally(() => {
        refreshing = false;
      });
  };

  const showPermission = () => {
    const box = document.getElementById("popups");
    const button = document.getElementById("popups-allow");
    const state = document.getElementById("popups-state");
    if (!box || !button || !state) return;
    box.hidden = false;
    if (!("Notification" in window)) {
      button.hidden = true;
      state.textContent = words.popups.unsupported;
      return;
    }
    const permission = Notification.permission;
    button.hidden = permission !== "default";
    state.textContent =
      permission === "granted"
        ? words.popups.on
        : permission === "denied"
          ? words.popups.blocked
          : words.popups.off;
  };

  const toggle = (event) => {
    const button = event.currentTarget;
    const name = button.getAttribute("data-follow");
    const list = followed();
    const at = list.indexOf(name);
    if (at >= 0) list.splice(at, 1);
    else list.push(name);
    setFollowed(list);
    button.setAttribute("aria-pressed", at >= 0 ? "false" : "true");
  };

  const bindFollow = () => {
    const list = followed();
    for (const button of document.querySelectorAll("button.follow")) {
      button.hidden = false;
      const on = list.includes(button.getAttribute("data-follow"));
      button.setAttribute("aria-pressed", on ? "true" : "false");
      if (!button.dataset.bound) {
        button.dataset.bound = "1";
        button.addEventListener("click", toggle);
      }
    }
  };

  const unavailable = () => {
    const el = document.getElementById("overall");
    setState(el, "overall", "unknown");
    el.querySelector(".sym").textContent = words.symbols.unknown;
    el.querySelector(".text").textContent = words.unavailable;
    el.querySelector(".extra").textContent = "";
  };

  const connect = () => {
    if (!("EventSource" in window)) {
      setTimeout(() => location.reload(), 30000); // as without a script
      return;
    }
    const source = new EventSource(words.events);
    source.addEventListener("state", (event) => {
      last = JSON.parse(event.data);
      apply(last, true);
      if (noticesChanged(last)) refreshParts();
      document.documentElement.setAttribute("data-live", "on");
    });
    source.addEventListener("unavailable", unavailable);
    source.addEventListener("error", () => {
      document.documentElement.setAttribute("data-live", "off");
      // Closed for good (the server said 503 or no stream): reload as without a script.
      if (source.readyState === EventSource.CLOSED) setTimeout(() => location.reload(), 30000);
    });
  };

  const allow = document.getElementById("popups-allow");
  if (allow && "Notification" in window) {
    allow.addEventListener("click", () => {
      const asked = Notification.requestPermission(showPermission);
      if (asked && asked.then) asked.then(showPermission);
    });
  }
  bindFollow();
  showPermission();
  connect();
  setInterval(refreshParts, PARTS_EVERY_MS);
})();
