// exquisite-store viewer: tree zoom, extend with live progress, compare tools.
// Everything here is progressive: the pages work without it (side by side, links, forms).
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]');
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  const headers = () => ({ "X-CSRF-Token": csrf ? csrf.content : "", "X-Requested-With": "fetch" });
  const short = (id) => (id || "").slice(0, 12);
  const typing = (el) => el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));

  // --- tree zoom (the tree is swapped in live: always ask for the current one) -------
  let scale = 1;
  const treeSvg = () => $("#tree svg");
  const applyZoom = () => { const t = treeSvg(); if (t) t.style.transform = `scale(${scale})`; };
  const zoom = (z) => {
    const t = treeSvg();
    if (!t) return;
    if (z === 0) scale = Math.min(1, $("#tree").clientWidth / t.width.baseVal.value);
    else scale = Math.max(0.05, Math.min(4, scale * z));
    applyZoom();
  };
  $$("[data-zoom]").forEach((b) => b.addEventListener("click", () => zoom(parseFloat(b.dataset.zoom))));
  if ($("#tree")) {
    $("#tree").addEventListener("wheel", (e) => {
      if (!e.ctrlKey) return;
      e.preventDefault();
      zoom(e.deltaY < 0 ? 1.1 : 0.9);
    }, { passive: false });
  }

  // --- the workspace: one event stream per tab; the server renders every part -------
  const ws = $("#workspace");
  const listeners = [];  // followers of one job (the Extend form's progress list)
  let selectedStep = null;
  const markSelected = () => {
    if (!selectedStep) return;
    $$("#tree a.node[data-step]").forEach((n) => n.classList.toggle("selected", n.dataset.step.startsWith(selectedStep)));
  };
  const ALL_PARTS = ["summary", "tree", "branches", "attempts", "jobs", "history", "grow"];
  let refreshing = null, pendingParts = new Set(), pendingEvents = [];
  // fetch server-rendered parts and swap them in; then tell the page (and the canvas)
  const refresh = (parts, event) => {
    parts.forEach((p) => pendingParts.add(p));
    if (event) pendingEvents.push(event);
    if (refreshing) return refreshing;
    refreshing = (async () => {
      await new Promise((r) => setTimeout(r, 60));  // events come in bursts: one fetch for a burst
      const want = Array.from(pendingParts); pendingParts = new Set();
      const events = pendingEvents; pendingEvents = [];
      try {
        const r = await fetch(`${ws.dataset.liveUrl}?parts=${want.join(",")}`, { headers: headers() });
        if (!r.ok) return;
        const j = await r.json();
        Object.entries(j.parts).forEach(([name, html]) => {
          const el = $(`[data-part="${name}"]`);
          if (!el || el.innerHTML === html) return;
          el.innerHTML = html;
          if (name === "attempts") el.hidden = !j.attempts;
        });
        if (want.includes("tree")) { applyZoom(); markSelected(); refilter(); }
        events.forEach((ev) => document.dispatchEvent(new CustomEvent("exq:changed", { detail: { session: ws.dataset.session, event: ev } })));
      } catch (err) { /* the next event or poll asks again */ } finally {
        refreshing = null;
        if (pendingParts.size) refresh([]);
      }
    })();
    return refreshing;
  };
  const recent = [];  // the stream may bring a job's first events before its POST answers
  const onEvent = (d) => {
    recent.push(d);
    if (recent.length > 200) recent.shift();
    listeners.slice().forEach((f) => f(d));
    if (d.type === "succeeded" || d.type === "failed" || d.type === "moved") refresh(ALL_PARTS, d);
    else if (d.type === "plan") refresh(["grow", "summary"], d);
    else refresh(["jobs"]);
  };
  if (ws) {
    let seq = Number(ws.dataset.seq || 0), timer = null;
    const es = new EventSource(`${ws.dataset.eventsUrl}?after=${seq}`);
    ["queued", "started", "progress", "succeeded", "failed", "moved", "plan"].forEach((t) => es.addEventListener(t, (ev) => {
      const d = JSON.parse(ev.data);
      seq = Math.max(seq, d.seq || 0);
      onEvent(d);
    }));
    // a refused stream (503: every slot taken) is closed for good: poll instead
    const poll = async () => {
      try {
        const r = await fetch(`${ws.dataset.liveUrl}?parts=jobs`, { headers: headers() });
        if (!r.ok) return;
        const j = await r.json();
        const el = $('[data-part="jobs"]');
        if (el && el.innerHTML !== j.parts.jobs) el.innerHTML = j.parts.jobs;
        if (j.seq > seq) { seq = j.seq; refresh(ALL_PARTS, { type: "polled", seq }); }
        listeners.slice().forEach((f) => f({ type: "poll" }));
      } catch (err) { /* the next poll tries again */ }
    };
    es.onerror = () => {
      if (es.readyState !== EventSource.CLOSED || timer) return;
      timer = setInterval(poll, 2000);
      poll();
    };
  }

  // --- forms that answer in place: confirmation naming what moves, errors inline -----
  const confirmText = (form) => {
    if (form.dataset.confirm) return form.dataset.confirm;
    if (form.dataset.confirmHead) {
      const branches = JSON.parse(form.dataset.confirmHead);
      const b = (form.branch && form.branch.value) || form.dataset.current;
      const old = branches[b], step = form.dataset.step;
      if (!old) return `Set head: create branch ${b} at ${short(step)} and make it HEAD's branch?`;
      if (old === step) return `Set head: make ${b} HEAD's branch (it is at ${short(step)} already)?`;
      return `Set head: move branch ${b} from ${short(old)} to ${short(step)} and make it HEAD's branch? ` +
        `${short(old)} stays in the tree and in ${b}'s history (Undo brings it back).`;
    }
    return null;
  };
  document.addEventListener("submit", async (e) => {
    const form = e.target;
    if (!form.matches("form[data-live]")) return;
    e.preventDefault();
    const text = confirmText(form);
    if (text && !window.confirm(text)) return;
    const out = $(".form-error", form);
    const button = $("button", form);
    if (out) out.textContent = "";
    if (button) button.disabled = true;
    try {
      const r = await fetch(form.action, { method: "POST", body: new FormData(form), headers: headers() });
      const j = await r.json().catch(() => ({ error: `the server answered ${r.status}` }));
      if (!r.ok) { if (out) out.textContent = j.error; return; }
      if (form.dataset.next) location.href = form.dataset.next;
      else if (ws && ws.contains(form)) refresh(ALL_PARTS, { type: "moved", ...j });
      else if (r.headers.get("Location")) location.href = r.headers.get("Location");
      else location.reload();
    } catch (err) {
      if (out) out.textContent = "the viewer did not answer; nothing was sent twice, try again";
    } finally { if (button) button.disabled = false; }
  });
  $$("a[data-back]").forEach((a) => a.addEventListener("click", (e) => {
    if (history.length > 1) { e.preventDefault(); history.back(); }
  }));

  // --- the tree's filter: the server says which steps match; the page dims the others --
  const filter = $("#tree-filter");
  let filterIds = null;
  const applyFilter = () => {
    $$("#tree a.node[data-step]").forEach((n) => {
      n.classList.toggle("match", !!filterIds && filterIds.has(n.dataset.step));
      n.classList.toggle("dim", !!filterIds && !filterIds.has(n.dataset.step));
    });
    $$("#tree a.node.failed").forEach((n) => n.classList.toggle("dim", !!filterIds));
  };
  function refilter() { if (filter && filterIds) filter.requestSubmit(); }
  if (filter) {
    const out = $("#tree-filter-out");
    filter.addEventListener("submit", async (e) => {
      e.preventDefault();
      const q = new URLSearchParams(new FormData(filter));
      Array.from(q.entries()).forEach(([k, v]) => { if (!v) q.delete(k); });
      if (!Array.from(q.keys()).length) { filterIds = null; applyFilter(); out.textContent = ""; return; }
      try {
        const r = await fetch(`${filter.action}?${q}`, { headers: headers() });
        const j = await r.json();
        if (!r.ok) { out.textContent = j.error; return; }
        filterIds = new Set(j.ids);
        applyFilter();
        out.textContent = `${j.count} of ${j.of} steps match`;
      } catch (err) { out.textContent = "the viewer did not answer; try again"; }
    });
    filter.addEventListener("reset", () => { filterIds = null; out.textContent = ""; setTimeout(applyFilter); });
  }

  // --- keyboard shortcuts (listed on ?) ----------------------------------------------
  const keys = $("#shortcuts");
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target) || e.defaultPrevented) return;
    if (e.key === "?" && keys) { e.preventDefault(); if (keys.open) keys.close(); else keys.showModal(); return; }
    if (keys && keys.open) return;
    if (e.key === "e" && $("#extend")) { e.preventDefault(); $("#extend").scrollIntoView({ block: "nearest" }); $("#extend select, #extend input:not([type=hidden])").focus(); }
    if (e.key === "h" && $("#history-panel")) { e.preventDefault(); $("#history-panel").scrollIntoView(); }
    if (e.key === "/" && filter) { e.preventDefault(); filter.elements.prompt.focus(); }
    if (e.key === "s" && $("#star-form")) { e.preventDefault(); $("#star-form").requestSubmit(); }
    if (e.key === "+" || e.key === "=") zoom(1.25);
    if (e.key === "-") zoom(0.8);
    if (e.key === "0") zoom(0);
  });

  // --- extend ---------------------------------------------------------------------
  const form = $("#extend");
  if (form) {
    const session = form.dataset.session;
    const base = form.dataset.base || "./";
    const params = new URLSearchParams(location.search);
    // the form's settings persist per session, between steps and reloads
    const KEPT = ["extension_px", "overlap_px", "context_px", "seam", "immutable_policy", "backend", "model", "quality", "n", "input_fidelity", "prompt"];
    const store = form.dataset.persist;
    const save = () => {
      try {
        const kept = {};
        KEPT.forEach((k) => { if (form.elements[k]) kept[k] = form.elements[k].value; });
        localStorage.setItem(store, JSON.stringify(kept));
      } catch (err) { /* no storage (private mode): the form just starts from the defaults */ }
    };
    try {
      const kept = JSON.parse(localStorage.getItem(store) || "null");
      if (kept) Object.entries(kept).forEach(([k, v]) => {
        const el = form.elements[k];
        if (el && (el.tagName !== "SELECT" || Array.from(el.options).some((o) => o.value === v))) el.value = v;
      });
    } catch (err) { /* a damaged entry: the defaults */ }
    if (params.get("from")) {
      form.parent.value = params.get("from");
      form.branch.value = "";
      selectedStep = params.get("from");
      markSelected();
    }
    const est = $("#estimate");
    const formError = $(".form-error", form);
    let timer = null;
    const estimate = () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const q = new URLSearchParams(new FormData(form));
        q.delete("csrf_token");
        try {
          const r = await fetch(`${base}s/${session}/estimate.json?${q}`, { headers: headers() });
          const j = await r.json();
          if (!r.ok) { est.textContent = `cannot run: ${j.error}`; return; }
          // every number and the budget rule come from the server (core.estimate)
          let text = `frame ${j.frame}, mask paints ${(j.mask_paint_permille / 10).toFixed(1)}%, estimate ${j.estimate_usd}`;
          if (j.budget_micro_usd != null) {
            text += ` (spent ${j.spent_usd} of ${j.budget_usd})`;
            if (j.over_budget) text += " — over budget";
          }
          if (j.ignores_prompt) text += "; this backend ignores the prompt";
          est.textContent = text;
        } catch (err) { est.textContent = "estimate unavailable"; }
      }, 250);
    };
    form.addEventListener("input", () => { save(); estimate(); });
    form.addEventListener("change", save);
    estimate();

    const progress = $("#progress");
    const cands = $("#candidates");
    const cancelButton = $("#cancel-job");
    const submitButton = $('button[type="submit"]', form);
    // follow one job in the progress list: its events arrive on the tab's one stream
    // (or, when the server had no stream to spare, from /-/jobs/<session>.json polls)
    let following = null;
    const follow = (job, fromLog) => {
      if (following) listeners.splice(listeners.indexOf(following), 1);
      progress.innerHTML = "";
      if (cancelButton) {
        cancelButton.hidden = false;
        cancelButton.disabled = false;
        cancelButton.textContent = "Cancel this step";
        cancelButton.onclick = async () => {
          cancelButton.disabled = true;
          const r = await fetch(`${base}-/jobs/${session}/${job}/cancel`, { method: "POST", headers: headers() });
          if (!r.ok) { const j = await r.json(); cancelButton.disabled = false; cancelButton.textContent = `cannot cancel: ${j.error}`; }
        };
      }
      const line = (text, cls) => { const li = document.createElement("li"); li.textContent = text; if (cls) li.className = cls; progress.appendChild(li); return li; };
      let last = null, phase = null, finished = false;
      const seen = new Set();
      const stop = () => {
        finished = true;
        listeners.splice(listeners.indexOf(following), 1);
        following = null;
        submitButton.disabled = false;
        if (cancelButton) cancelButton.hidden = true;
      };
      const showStaged = async (d) => {
        cands.innerHTML = "";
        const ul = document.createElement("ul"); ul.className = "plain";
        Object.entries(d.branches || {}).forEach(([b, sid]) => {
          const li = document.createElement("li");
          li.innerHTML = `<a></a> on <b></b> `;
          li.querySelector("a").setAttribute("href", `${base}step/${sid}`);
          li.querySelector("a").textContent = short(sid);
          li.querySelector("b").textContent = b;
          ul.appendChild(li);
        });
        cands.appendChild(ul);
        const staged = Object.entries(d.staged || {});
        if (staged.length) {
          // each candidate's own seed, from the server's staging area
          let seeds = {};
          try {
            const r = await fetch(`${base}s/${session}/staged.json`, { headers: headers() });
            (await r.json()).forEach((g) => g.candidates.forEach((c) => { seeds[c.step] = c.seed; }));
          } catch (err) { seeds = {}; }
          const decide = async (verb, sid, li, what) => {
            if (verb === "discard" && !window.confirm(`Discard ${what} (${short(sid)})? It stays in the tree, off-branch; Undo in the history brings it back.`)) return;
            const r = await fetch(`${base}s/${session}/${verb}`, { method: "POST", body: new URLSearchParams({ step: sid }), headers: headers() });
            const j = await r.json();
            li.querySelector(".outcome").textContent = r.ok ? ` ${verb === "accept" ? "accepted on " + j.branch : verb === "keep" ? "kept as " + j.branch : "discarded"}` : ` cannot ${verb}: ${j.error}`;
          };
          staged.forEach(([place, sid]) => {
            const [b, , k] = place.split("/");
            const li = document.createElement("li");
            li.className = "staged";
            li.innerHTML = `<a></a> <b></b><span class="seed muted"></span> <button type="button" data-verb="accept">Accept</button> <button type="button" data-verb="keep">Keep as branch</button> <button type="button" data-verb="discard">Discard</button><span class="outcome"></span>`;
            li.querySelector("a").setAttribute("href", `${base}step/${sid}`);
            li.querySelector("a").textContent = short(sid);
            li.querySelector("b").textContent = `${b} candidate ${k}`;
            if (seeds[sid] != null) li.querySelector(".seed").textContent = ` · seed ${seeds[sid]}`;
            li.querySelectorAll("button").forEach((btn) => btn.addEventListener("click", () => decide(btn.dataset.verb, sid, li, `${b} candidate ${k}`)));
            ul.appendChild(li);
          });
        }
        if (d.step_ids.length > 1) {
          const a = document.createElement("a"); a.href = `${base}compare?ids=${d.step_ids.join(",")}`; a.textContent = "compare the candidates"; a.className = "button";
          cands.appendChild(a);
        }
      };
      // one event of this job, from the stream or made from a polled state
      const show = (d) => {
        if (finished) return;
        if ((d.type === "queued" || d.type === "started") && !seen.has(d.type)) { seen.add(d.type); line(d.type); }
        if (d.type === "progress") {
          const label = d.candidate && d.of > 1 ? `${d.phase} (candidate ${d.candidate} of ${d.of})` : d.phase;
          if (label !== phase) { phase = label; if (last) last.className = "done"; last = line(d.phase, "now"); if (label !== d.phase) last.dataset.candidate = d.candidate; }
        }
        if (d.type === "failed") { if (last) last.className = "fail"; line(`failed: ${d.kind}: ${d.message}`, "fail"); stop(); }
        if (d.type === "succeeded") {
          if (last) last.className = "done";
          line(`done: ${d.step_ids.length} candidate(s)`, "done");
          stop();
          showStaged(d);
        }
      };
      const fromState = (st) => {
        show({ type: "queued" });
        if (st.state !== "queued") show({ type: "started" });
        if (st.phase) show({ type: "progress", phase: st.phase });
        if (st.state === "succeeded" || st.state === "failed") show({ type: st.state, ...st.result });
      };
      const catchUp = async () => {
        try {
          const r = await fetch(`${base}-/jobs/${session}.json`, { headers: headers() });
          if (!r.ok) return;
          const st = (await r.json())[job];
          if (st) fromState(st);
        } catch (err) { /* the next poll or event tries again */ }
      };
      following = (d) => {
        if (d.type === "poll") catchUp();
        else if (d.job === job) show(d);
      };
      listeners.push(following);
      recent.filter((d) => d.job === job).forEach(show);
      if (fromLog) catchUp();  // a job started before this page loaded: what it did so far
    };
    form.addEventListener("submit", async (e) => {
      e.preventDefault();  // from the button, Enter, or requestSubmit() (a canvas side)
      save();
      submitButton.disabled = true;
      if (formError) formError.textContent = "";
      try {
        const r = await fetch(form.action, { method: "POST", body: new FormData(form), headers: headers() });
        const j = await r.json().catch(() => ({ error: `the server answered ${r.status}` }));
        if (!r.ok) { formError.textContent = j.error; submitButton.disabled = false; return; }
        history.replaceState(null, "", `?job=${j.job}`);
        follow(j.job, false);
      } catch (err) {
        formError.textContent = "the viewer did not answer; check that it is running, then try again";
        submitButton.disabled = false;
      }
    });
    const running = params.get("job");
    if (running) follow(running, true);
  }

  // --- compare: slider, flip-book, synced pan ---------------------------------------
  // their frames are copies of the side-by-side canvases (the page sends each one once)
  const sides = $$("#side figure .canvas");
  $$("[data-from]").forEach((slot) => {
    const src = sides[parseInt(slot.dataset.from, 10)];
    if (src) slot.appendChild(src.cloneNode(true));
  });
  $$("[data-slider-input]").forEach((input) => {
    const over = input.previousElementSibling.querySelector(".over");
    input.addEventListener("input", () => { over.style.clipPath = `inset(0 0 0 ${input.value}%)`; });
  });
  $$("[data-flip]").forEach((box) => {
    const imgs = $$("[data-label]", box);
    const label = box.nextElementSibling;
    let i = 0;
    setInterval(() => {
      imgs[i].hidden = true; i = (i + 1) % imgs.length; imgs[i].hidden = false;
      if (label) label.textContent = imgs[i].dataset.label;
    }, 900);
  });
  const synced = $$(".pan.sync");
  let busy = false;
  synced.forEach((el) => el.addEventListener("scroll", () => {
    if (busy) return; busy = true;
    synced.forEach((o) => { if (o !== el) { o.scrollLeft = el.scrollLeft; o.scrollTop = el.scrollTop; } });
    busy = false;
  }));
})();
