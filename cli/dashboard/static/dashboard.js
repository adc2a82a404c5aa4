// vinculum dashboard: live updates and the lattice picture's interactions.
// Every page is whole without this script. It listens on /stream (server-sent events):
// a "change" names the regions touched since the page's version; each element with
// data-region among them is fetched again from its data-fragment URL and swapped in
// place (focus kept where it was). No framework, no build step.
"use strict";

(function () {
  const body = document.body;
  const live = document.getElementById("live");
  let version = Number(body.dataset.version || "0");
  let busy = false;
  let pending = new Set();

  function setLive(on, text) {
    if (!live) return;
    live.textContent = text;
    live.classList.toggle("on", on);
  }

  function regionsFor(names) {
    const all = names.includes("*");
    return Array.from(document.querySelectorAll("[data-region]")).filter(
      (el) => all || names.includes(el.dataset.region));
  }

  async function swap(el) {
    const focused = document.activeElement;
    const focusId = focused && el.contains(focused) ? focused.id : null;
    const focusRef = focused && el.contains(focused) && focused.dataset
      ? focused.dataset.ref : null;
    const response = await fetch(el.dataset.fragment, {cache: "no-store"});
    if (!response.ok) return;
    el.innerHTML = await response.text();
    let again = focusId ? document.getElementById(focusId) : null;
    if (!again && focusRef) {
      again = el.querySelector(`[data-ref="${CSS.escape(focusRef)}"]`);
    }
    if (again) again.focus({preventScroll: true});
  }

  async function refresh(names, newVersion) {
    names.forEach((n) => pending.add(n));
    if (busy) return;
    busy = true;
    try {
      while (pending.size) {
        const batch = Array.from(pending);
        pending = new Set();
        await Promise.all(regionsFor(batch).map(swap));
      }
      version = Math.max(version, newVersion);
      body.dataset.version = String(version);
      repick();
    } catch (err) {
      setLive(false, "update failed: reload to update");
    } finally {
      busy = false;
    }
  }

  function connect() {
    if (!window.EventSource || !document.querySelector("[data-region]")) return;
    const source = new EventSource(`/stream?v=${version}`);
    source.onopen = () => setLive(true, "live");
    source.onerror = () => setLive(false, "reconnecting…");
    source.addEventListener("change", (event) => {
      const msg = JSON.parse(event.data);
      refresh(msg.regions, msg.version);
    });
  }

  // The lattice picture: select an entity to pick out everything its deployment runs.
  let picked = null;

  function repick() {
    const lattice = document.getElementById("lattice");
    if (!lattice) return;
    lattice.classList.toggle("lattice-picked", picked !== null);
    lattice.querySelectorAll(".entity").forEach((el) => {
      const on = picked !== null && el.dataset.owner === picked;
      el.classList.toggle("picked", on);
      const button = el.querySelector("button.pick");
      if (button) button.setAttribute("aria-pressed", String(on));
    });
  }

  function pick(el) {
    if (!el || !el.dataset.owner) return;
    picked = picked === el.dataset.owner ? null : el.dataset.owner;
    repick();
  }

  // A button's click comes from the mouse, Enter and Space alike.
  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest("button.pick");
    if (button) pick(button.closest(".entity"));
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && picked !== null) {
      picked = null;
      repick();
    }
  });

  // Group-by: submit on change (the form's button does it without script).
  const groupBy = document.getElementById("group");
  if (groupBy && groupBy.form) {
    groupBy.addEventListener("change", () => groupBy.form.submit());
  }

  setLive(false, "connecting…");
  repick();
  connect();
})();
