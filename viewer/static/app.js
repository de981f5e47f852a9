// exquisite-store viewer: tree zoom, extend with live progress, compare tools.
// Everything here is progressive: the pages work without it (side by side, links, forms).
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]');
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  // --- tree zoom ------------------------------------------------------------------
  const tree = $("#tree svg");
  if (tree) {
    let scale = 1;
    const apply = () => { tree.style.transform = `scale(${scale})`; tree.style.width = ""; };
    $$("[data-zoom]").forEach((b) => b.addEventListener("click", () => {
      const z = parseFloat(b.dataset.zoom);
      if (z === 0) {
        const wrap = $("#tree");
        scale = Math.min(1, wrap.clientWidth / tree.width.baseVal.value);
      } else { scale = Math.max(0.05, Math.min(4, scale * z)); }
      apply();
    }));
    $("#tree").addEventListener("wheel", (e) => {
      if (!e.ctrlKey) return;
      e.preventDefault();
      scale = Math.max(0.05, Math.min(4, scale * (e.deltaY < 0 ? 1.1 : 0.9)));
      apply();
    }, { passive: false });
  }

  // --- extend ---------------------------------------------------------------------
  const form = $("#extend");
  if (form) {
    const session = form.dataset.session;
    const base = form.dataset.base || "./";
    const params = new URLSearchParams(location.search);
    if (params.get("from")) {
      form.parent.value = params.get("from");
      form.branch.value = "";
      const node = $(`[data-step="${params.get("from")}"]`);
      if (node) node.classList.add("selected");
    }
    const est = $("#estimate");
    let timer = null;
    const estimate = () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const q = new URLSearchParams(new FormData(form));
        q.delete("csrf_token");
        try {
          const r = await fetch(`${base}s/${session}/estimate.json?${q}`, { headers: { "X-Requested-With": "fetch" } });
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
    form.addEventListener("input", estimate);
    estimate();

    const progress = $("#progress");
    const cands = $("#candidates");
    // events of a job we just started come after the page's last one; a reloaded
    // page following a job it did not start reads the log from the beginning.
    // Live events come over SSE; when the server has no stream to spare (503) the
    // page asks /-/jobs/<session>.json every 2 s instead.
    const cancelButton = $("#cancel-job");
    const follow = (job, after) => {
      progress.innerHTML = "";
      if (cancelButton) {
        cancelButton.hidden = false;
        cancelButton.disabled = false;
        cancelButton.onclick = async () => {
          cancelButton.disabled = true;
          const r = await fetch(`${base}-/jobs/${session}/${job}/cancel`, { method: "POST", headers: { "X-CSRF-Token": csrf ? csrf.content : "", "X-Requested-With": "fetch" } });
          if (!r.ok) { const j = await r.json(); cancelButton.disabled = false; cancelButton.textContent = `cannot cancel: ${j.error}`; }
        };
      }
      const line = (text, cls) => { const li = document.createElement("li"); li.textContent = text; if (cls) li.className = cls; progress.appendChild(li); return li; };
      let last = null, phase = null, finished = false, timer = null;
      const seen = new Set();
      const es = new EventSource(`${base}-/events/${session}?after=${after || 0}`);
      const stop = () => { finished = true; es.close(); if (timer) clearInterval(timer); form.querySelector("button").disabled = false; if (cancelButton) cancelButton.hidden = true; };
      // one event of this job, from the stream or made from a polled state
      const show = (d) => {
        if (finished) return;
        if ((d.type === "queued" || d.type === "started") && !seen.has(d.type)) { seen.add(d.type); line(d.type); }
        if (d.type === "progress" && d.phase !== phase) { phase = d.phase; if (last) last.className = "done"; last = line(d.phase, "now"); }
        if (d.type === "failed") { if (last) last.className = "fail"; line(`failed: ${d.kind}: ${d.message}`, "fail"); stop(); }
        if (d.type === "succeeded") {
          if (last) last.className = "done";
          line(`done: ${d.step_ids.length} candidate(s)`, "done");
          stop();
          cands.innerHTML = "";
          const ul = document.createElement("ul"); ul.className = "plain";
          Object.entries(d.branches || {}).forEach(([b, sid]) => {
            const li = document.createElement("li");
            li.innerHTML = `<a>${sid.slice(0, 12)}</a> on <b></b> `;
            li.querySelector("a").setAttribute("href", `${base}step/${sid}`);
            li.querySelector("b").textContent = b;
            ul.appendChild(li);
          });
          // staged candidates: nothing moved yet; accept one, keep one as a branch, or drop one
          const decide = async (verb, sid, li) => {
            const r = await fetch(`${base}s/${session}/${verb}`, { method: "POST", body: new URLSearchParams({ step: sid }), headers: { "X-CSRF-Token": csrf ? csrf.content : "", "X-Requested-With": "fetch" } });
            const j = await r.json();
            li.querySelector(".outcome").textContent = r.ok ? ` ${verb === "accept" ? "accepted on " + j.branch : verb === "keep" ? "kept as " + j.branch : "discarded"}` : ` cannot ${verb}: ${j.error}`;
          };
          Object.entries(d.staged || {}).forEach(([place, sid]) => {
            const [b, , k] = place.split("/");
            const li = document.createElement("li");
            li.className = "staged";
            li.innerHTML = `<a>${sid.slice(0, 12)}</a> <b></b> <button type="button" data-verb="accept">Accept</button> <button type="button" data-verb="keep">Keep as branch</button> <button type="button" data-verb="discard">Discard</button><span class="outcome"></span>`;
            li.querySelector("a").setAttribute("href", `${base}step/${sid}`);
            li.querySelector("b").textContent = `${b} candidate ${k}`;
            li.querySelectorAll("button").forEach((btn) => btn.addEventListener("click", () => decide(btn.dataset.verb, sid, li)));
            ul.appendChild(li);
          });
          cands.appendChild(ul);
          if (d.step_ids.length > 1) {
            const a = document.createElement("a"); a.href = `${base}compare?ids=${d.step_ids.join(",")}`; a.textContent = "compare the candidates"; a.className = "button";
            cands.appendChild(a);
          }
          const reload = document.createElement("a"); reload.href = location.pathname; reload.textContent = " refresh the tree";
          cands.appendChild(reload);
        }
      };
      const handle = (ev) => { const d = JSON.parse(ev.data); if (d.job === job) show(d); };
      ["queued", "started", "progress", "succeeded", "failed"].forEach((t) => es.addEventListener(t, handle));
      const poll = async () => {
        try {
          const r = await fetch(`${base}-/jobs/${session}.json`, { headers: { "X-Requested-With": "fetch" } });
          if (!r.ok) return;
          const st = (await r.json())[job];
          if (!st) return;
          show({ type: "queued" });
          if (st.state !== "queued") show({ type: "started" });
          if (st.phase) show({ type: "progress", phase: st.phase });
          if (st.state === "succeeded" || st.state === "failed") show({ type: st.state, ...st.result });
        } catch (err) { /* the next poll tries again */ }
      };
      // a refused stream (503) or one that cannot reconnect is closed for good: poll
      es.onerror = () => {
        if (es.readyState !== EventSource.CLOSED || finished || timer) return;
        timer = setInterval(poll, 2000);
        poll();
      };
    };
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      form.querySelector("button").disabled = true;
      const body = new FormData(form);
      const r = await fetch(form.action, { method: "POST", body, headers: { "X-CSRF-Token": csrf ? csrf.content : "", "X-Requested-With": "fetch" } });
      const j = await r.json();
      if (!r.ok) { progress.innerHTML = ""; const li = document.createElement("li"); li.className = "fail"; li.textContent = j.error; progress.appendChild(li); form.querySelector("button").disabled = false; return; }
      history.replaceState(null, "", `?job=${j.job}`);
      follow(j.job, form.dataset.seq);
    });
    const running = params.get("job");
    if (running) follow(running, 0);
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
