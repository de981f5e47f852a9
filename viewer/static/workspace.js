// exquisite-store workspace: a canvas in deep zoom (Leaflet over the server's tile pyramid),
// its steps' bands, extend by a side, the staging area in place, and the deep-zoom compare.
// Every number comes from the server (the page's data-view / data-items, or canvas.json).
(function () {
  "use strict";
  const L = window.L;
  if (!L) return;
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";
  // the plane's (x, y), y down, as Leaflet's CRS.Simple coordinates (y up)
  const ll = (x, y) => L.latLng(-y, x);
  const rectBounds = (x, y, w, h) => L.latLngBounds(ll(x, y), ll(x + w, y + h));
  const canvasBounds = (c) => rectBounds(c.x, c.y, c.width, c.height);
  const seamColour = (permille) => (permille <= 1150 ? "#2c8a4b" : permille <= 1600 ? "#d49400" : "#c23b2a");
  const typing = (t) => t && t.closest && t.closest("input, textarea, select, button, a, [contenteditable]");
  const post = async (url, fields) => {
    const r = await fetch(url, { method: "POST", body: new URLSearchParams(fields), headers: { "X-CSRF-Token": csrf, "X-Requested-With": "fetch" } });
    let j = {};
    try { j = await r.json(); } catch (err) { j = { error: `status ${r.status}` }; }
    return { ok: r.ok, j };
  };

  // Level k of the pyramid is Leaflet's zoom -k: at zoom z a tile of T screen pixels
  // covers T * 2^-z plane pixels, on the grid anchored at the plane's origin.
  const PyramidLayer = L.TileLayer.extend({
    getTileUrl(c) { return `${this.options.base}/${-c.z}/${c.x}/${c.y}.png`; },
  });
  const pyramidLayer = (canvas, base, extra) => new PyramidLayer("", Object.assign({
    base: base || canvas.tiles,
    tileSize: canvas.tile_size,
    minNativeZoom: -canvas.top,
    maxNativeZoom: 0,
    minZoom: -canvas.top - 4,
    maxZoom: 5,
    bounds: canvasBounds(canvas),
    noWrap: true,
    keepBuffer: 1,
  }, extra || {}));
  const makeMap = (el, canvas) => {
    const map = L.map(el, {
      crs: L.CRS.Simple, minZoom: -canvas.top - 4, maxZoom: 5, zoomSnap: 0.25, zoomDelta: 0.5,
      wheelPxPerZoomLevel: 100, attributionControl: false, keyboard: false, fadeAnimation: false,
    });
    map.fitBounds(canvasBounds(canvas), { padding: [16, 16], animate: false });
    return map;
  };
  // time to the first tile drawn and to each zoom's tiles all loaded (the benchmark reads these)
  const timings = { start: performance.now(), firstTile: null, loads: [] };
  const watch = (layer) => {
    layer.on("tileload", () => { if (timings.firstTile === null) timings.firstTile = performance.now(); });
    layer.on("load", () => timings.loads.push(performance.now()));
    return layer;
  };

  // --- the session page's canvas ---------------------------------------------------------
  const ws = $("#canvas-view");
  if (ws) workspace(ws);

  function workspace(root) {
    let view = JSON.parse(root.dataset.view);
    const base = root.dataset.base || "./";
    const exportMode = root.dataset.export === "yes";
    // a viewer's role (or a share link) reads only: no sides to extend, no staging verbs
    const readOnly = exportMode || document.body.dataset.role === "viewer";
    const hover = $("#ws-hover", root);
    const selected = $("#ws-selected", root);
    const map = makeMap($("#ws-map", root), view.canvas);
    const bandsLayer = L.layerGroup().addTo(map);
    const sidesLayer = L.layerGroup().addTo(map);
    let tiles = null, shownCanvas = null;
    const stage = { groups: [], g: 0, i: 0 };
    const stagingBar = $("#ws-staging", root);
    const defaultHover = hover.textContent;

    const showTiles = (canvas) => {
      if (shownCanvas === canvas.id) return;
      const old = tiles;
      tiles = watch(pyramidLayer(canvas)).addTo(map);
      shownCanvas = canvas.id;
      map.setMinZoom(-canvas.top - 4);
      if (old) tiles.once("load", () => map.removeLayer(old));
      if (old) setTimeout(() => map.hasLayer(old) && map.removeLayer(old), 3000);
    };
    const describe = (b) => `${b.short} · ${b.direction} +${b.px} · seed ${b.seed} · ${b.backend} · seam ${(b.seam / 1000).toFixed(2)}${b.cost ? ` · ${b.cost}` : ""} · by ${b.author}${b.prompt ? ` · “${b.prompt}”` : ""}`;
    const drawBands = (list, highlight) => {
      bandsLayer.clearLayers();
      list.forEach((b) => {
        const [x, y, w, h] = b.rect;
        const hl = highlight === b.step;
        const rect = L.rectangle(rectBounds(x, y, w, h), {
          color: hl ? "#ffb000" : seamColour(b.seam), weight: hl ? 3 : 1.5, dashArray: hl ? "6 4" : null,
          fillOpacity: hl ? 0.08 : 0.03, className: `ws-band${hl ? " ws-band-now" : ""}`,
        });
        rect.bindTooltip(describe(b), { sticky: true, className: "ws-band-tip" });
        rect.on("mouseover", () => { hover.textContent = describe(b); });
        rect.on("mouseout", () => { hover.textContent = defaultHover; });
        rect.on("click", () => select(b.step));
        rect.addTo(bandsLayer);
      });
    };
    const drawSides = () => {
      sidesLayer.clearLayers();
      if (readOnly || stage.groups.length) return;
      const c = view.canvas;
      const d = 28 / Math.pow(2, map.getZoom()); // 28 screen pixels, in plane pixels
      const sides = {
        right: [c.x + c.width, c.y, d, c.height], left: [c.x - d, c.y, d, c.height],
        down: [c.x, c.y + c.height, c.width, d], up: [c.x, c.y - d, c.width, d],
      };
      Object.entries(sides).forEach(([dir, [x, y, w, h]]) => {
        const side = L.rectangle(rectBounds(x, y, w, h), { color: "#2f6fdf", weight: 1, dashArray: "4 4", fillOpacity: 0.12, className: `ws-side ws-side-${dir}` });
        side.bindTooltip(`extend ${dir} from ${view.short}`, { sticky: true });
        side.on("click", () => extend(dir));
        side.addTo(sidesLayer);
      });
    };
    map.on("zoomend", drawSides);

    const render = (fit) => {
      const c = view.canvas;
      stage.groups = view.staged || [];
      if (stage.g >= stage.groups.length) { stage.g = 0; stage.i = 0; }
      if (stage.groups.length) {
        showCandidate();
      } else {
        if (stagingBar) stagingBar.hidden = true;
        showTiles(c);
        drawBands(view.bands, null);
      }
      drawSides();
      const heads = view.heads.map((h) => ` [${h}]`).join("");
      selected.innerHTML = "Canvas of <a></a> ";
      $("a", selected).href = view.href;
      $("a", selected).textContent = view.short;
      selected.append(`(${view.what}, ${c.width}×${c.height})${heads}`);
      const headButton = $("#ws-head", root);
      if (headButton) headButton.hidden = view.following_head;
      if (fit) map.fitBounds(canvasBounds(c), { padding: [16, 16], animate: false });
    };

    // --- the staging area: a job's candidates, one at a time, in place ---------------------
    const current = () => stage.groups[stage.g].candidates[stage.i];
    function showCandidate() {
      const g = stage.groups[stage.g];
      const c = current();
      stagingBar.hidden = false;
      $("#ws-staged-what", root).textContent = `candidate ${c.k} (${stage.i + 1} of ${g.candidates.length} waiting) for ${g.branch}` +
        `${stage.groups.length > 1 ? ` (job ${stage.g + 1} of ${stage.groups.length})` : ""} · ${c.short} · seed ${c.seed} · seam ${(c.seam / 1000).toFixed(2)} · ${c.cost}`;
      stagingBar.dataset.step = c.step;
      showTiles(c.canvas);
      drawBands([...view.bands.filter((b) => b.step !== c.step), c], c.step);
    }
    const cycle = (delta) => {
      const n = stage.groups[stage.g].candidates.length;
      stage.i = (stage.i + delta + n) % n;
      showCandidate();
    };
    const pick = (k) => {
      const i = stage.groups[stage.g].candidates.findIndex((c) => c.k === k);
      if (i >= 0) { stage.i = i; showCandidate(); }
    };
    const decide = async (verb) => {
      const c = current();
      const g = stage.groups[stage.g];
      const out = $("#ws-staged-outcome", root);
      out.textContent = "…";
      const { ok, j } = await post(`${base}s/${encodeURIComponent(view.session)}/${verb}`, { step: c.step });
      if (!ok) { out.textContent = `cannot ${verb}: ${j.error}`; return; }
      out.textContent = verb === "accept" ? `accepted on ${j.branch}` : verb === "keep" ? `kept as ${j.branch}` : `discarded ${c.short}`;
      // an accepted candidate is what the page shows next (its branch's head)
      const next = verb === "accept" && !(view.following_head && g.branch === view.current_branch) ? c.step : view.following_head ? null : view.step;
      await reload(next);
    };
    if (stagingBar) {
      $$("[data-stage]", stagingBar).forEach((b) => b.addEventListener("click", () => {
        const what = b.dataset.stage;
        if (what === "prev") cycle(-1); else if (what === "next") cycle(1); else decide(what);
      }));
    }

    // --- selecting, extending, reloading ------------------------------------------------------
    async function reload(step) {
      if (exportMode) return;
      const q = step ? `?step=${encodeURIComponent(step)}` : "";
      try {
        const r = await fetch(`${base}s/${encodeURIComponent(view.session)}/canvas.json${q}`, { headers: { "X-Requested-With": "fetch" } });
        const j = await r.json();
        if (!r.ok) { hover.textContent = `cannot show that step: ${j.error}`; return; }
        const grew = j.canvas.id !== view.canvas.id && j.step !== view.step;
        view = j;
        const params = new URLSearchParams(location.search);
        if (view.following_head) params.delete("step"); else params.set("step", view.step);
        const search = params.toString();
        history.replaceState(null, "", location.pathname + (search ? `?${search}` : ""));
        render(false);
        if (grew && !map.getBounds().intersects(canvasBounds(view.canvas))) map.fitBounds(canvasBounds(view.canvas), { animate: false });
      } catch (err) { hover.textContent = "cannot reach the viewer to refresh the canvas"; }
    }
    const select = (step) => { if (exportMode) { const b = view.bands.find((x) => x.step === step); if (b) location.href = b.href; return; } reload(step); };
    function extend(dir) {
      const form = document.getElementById("extend");
      if (!form || exportMode) return;
      const button = form.querySelector("button[type=submit], button:not([type])");
      if (button && button.disabled) { hover.textContent = "a step is running; wait for it (or cancel it) first"; return; }
      form.elements.direction.value = dir;
      if (!view.following_head) {
        // grow the selected step: on its branch when it is a head, else from it
        if (view.heads.length) { form.elements.parent.value = ""; form.elements.branch.value = view.heads[0]; }
        else { form.elements.parent.value = view.step; form.elements.branch.value = ""; }
      }
      hover.textContent = `extending ${dir} from ${view.short}…`;
      form.requestSubmit();
    }
    const headButton = $("#ws-head", root);
    if (headButton) headButton.addEventListener("click", () => reload(null));
    $("#ws-bands", root).addEventListener("change", (e) => {
      if (e.target.checked) bandsLayer.addTo(map); else map.removeLayer(bandsLayer);
    });
    $("#ws-fit", root).addEventListener("click", () => map.fitBounds(canvasBounds(shownCanvasOf()), { padding: [16, 16] }));
    $("#ws-one", root).addEventListener("click", () => map.setZoom(0));
    const shownCanvasOf = () => (stage.groups.length ? current().canvas : view.canvas);

    const ARROWS = { ArrowRight: "right", ArrowLeft: "left", ArrowUp: "up", ArrowDown: "down" };
    document.addEventListener("keydown", (e) => {
      if (e.defaultPrevented || e.altKey || e.ctrlKey || e.metaKey || typing(e.target)) return;
      if (stage.groups.length) {
        if (e.key === "ArrowRight" || e.key === "ArrowDown") cycle(1);
        else if (e.key === "ArrowLeft" || e.key === "ArrowUp") cycle(-1);
        else if (/^[1-9]$/.test(e.key)) pick(Number(e.key));
        else if (e.key === "Enter") decide("accept");
        else if (e.key === "Delete" || e.key === "Backspace") decide("discard");
        else if (e.key === "k" || e.key === "K") decide("keep");
        else return;
        e.preventDefault();
      } else if (ARROWS[e.key] && !readOnly) {
        e.preventDefault();
        extend(ARROWS[e.key]);
      } else if (e.key === "b") {
        const box = $("#ws-bands", root);
        box.checked = !box.checked;
        box.dispatchEvent(new Event("change"));
      }
    });
    // another part of the page (app.js) saw a job commit or fail, or a ref move
    document.addEventListener("exq:changed", () => reload(view.following_head ? null : view.step));

    render(false);
    window.exqWorkspace = {
      map, timings,
      view: () => view,
      // where a plane pixel is on the screen (tests click and hover there)
      screenOf: (x, y) => {
        const p = map.latLngToContainerPoint(ll(x, y));
        const box = map.getContainer().getBoundingClientRect();
        return { x: box.left + p.x, y: box.top + p.y };
      },
    };
  }

  // --- compare: the same deep zoom, synced, with slider, flip-book and diff ------------------
  const cmp = $("#cmp");
  if (cmp) compare(cmp);

  function compare(root) {
    const items = JSON.parse(root.dataset.items);
    const base = root.dataset.base || "./";
    const union = items.reduce((u, it) => u.extend(canvasBounds(it.canvas)), L.latLngBounds(canvasBounds(items[0].canvas)));
    const topOf = Math.max(...items.map((it) => it.canvas.top));
    const big = { ...items[0].canvas, top: topOf };
    const maps = [];
    let syncing = false;
    const sync = (m) => m.on("move zoom", () => {
      if (syncing) return;
      syncing = true;
      maps.forEach((o) => { if (o !== m) o.setView(m.getCenter(), m.getZoom(), { animate: false }); });
      syncing = false;
    });
    const overlay = makeMap($("#cmp-map", root), big);
    overlay.fitBounds(union, { padding: [16, 16], animate: false });
    maps.push(overlay);
    const layers = items.map((it) => watch(pyramidLayer(it.canvas)));
    $$("[data-cmp-side]", root).forEach((el, i) => {
      const m = makeMap(el, big);
      m.setView(overlay.getCenter(), overlay.getZoom(), { animate: false });
      pyramidLayer(items[i].canvas).addTo(m);
      maps.push(m);
    });
    maps.forEach(sync);

    const label = $("#cmp-label", root);
    const slider = $("#cmp-slider", root);
    const modes = $$("[data-cmp-mode]", root);
    let mode = null, flipTimer = null, flipAt = 0, diff = null;
    const clearClip = () => layers.forEach((l) => { const c = l.getContainer(); if (c) c.style.clipPath = ""; });
    // the top layer of the slider shows right of the handle (B over A)
    const clip = () => {
      if (mode !== "slider") return;
      const c = layers[1].getContainer();
      if (!c) return;
      const size = overlay.getSize();
      const pane = L.DomUtil.getPosition(overlay.getPane("mapPane"));
      const x = (size.x * Number(slider.value)) / 100 - pane.x;
      const far = 1e6;
      c.style.clipPath = `polygon(${x}px ${-far}px, ${far}px ${-far}px, ${far}px ${far}px, ${x}px ${far}px)`;
    };
    overlay.on("move zoom zoomend resize viewreset", clip);
    slider.addEventListener("input", clip);
    const showOnly = (keep) => {
      layers.forEach((l, i) => { if (keep.includes(i)) { if (!overlay.hasLayer(l)) l.addTo(overlay); } else if (overlay.hasLayer(l)) overlay.removeLayer(l); });
      if (diff && overlay.hasLayer(diff) && !keep.includes("diff")) overlay.removeLayer(diff);
    };
    const flipShow = (i) => {
      flipAt = (i + items.length) % items.length;
      showOnly([flipAt]);
      label.textContent = `${items[flipAt].short} (${flipAt + 1} of ${items.length})`;
      root.dataset.flipAt = String(flipAt);
    };
    const pause = $("#cmp-pause", root);
    const setPlaying = (on) => {
      if (flipTimer) { clearInterval(flipTimer); flipTimer = null; }
      if (on) flipTimer = setInterval(() => flipShow(flipAt + 1), 900);
      pause.textContent = on ? "pause" : "play";
      pause.setAttribute("aria-pressed", on ? "false" : "true");
    };
    pause.addEventListener("click", () => setPlaying(!flipTimer));
    const setMode = (m) => {
      mode = m;
      modes.forEach((b) => b.setAttribute("aria-pressed", b.dataset.cmpMode === m ? "true" : "false"));
      root.dataset.mode = m;
      setPlaying(false);
      clearClip();
      slider.hidden = m !== "slider";
      pause.hidden = m !== "flip";
      if (m === "slider") {
        showOnly([0, 1]);
        layers[1].bringToFront();
        label.textContent = `${items[0].short} left of the handle, ${items[1].short} right of it`;
        clip();
        layers[1].on("load", clip);
      } else if (m === "flip") {
        flipShow(0);
        setPlaying(true);
      } else if (m === "diff") {
        showOnly(["diff"]);
        const a = items[0].canvas, b = items[1].canvas;
        if (!diff) {
          const common = canvasBounds(a).pad(0);
          const x0 = Math.max(a.x, b.x), y0 = Math.max(a.y, b.y);
          const x1 = Math.min(a.x + a.width, b.x + b.width), y1 = Math.min(a.y + a.height, b.y + b.height);
          diff = watch(pyramidLayer({ ...a, top: Math.min(a.top, b.top) }, `${base}-/pyramid-diff/${b.id}/${a.id}`, { bounds: x1 > x0 && y1 > y0 ? rectBounds(x0, y0, x1 - x0, y1 - y0) : common }));
        }
        diff.addTo(overlay);
        label.textContent = `where ${items[0].short} and ${items[1].short} differ (×4; black is the same)`;
      }
    };
    modes.forEach((b) => b.addEventListener("click", () => setMode(b.dataset.cmpMode)));
    document.addEventListener("keydown", (e) => {
      if (mode !== "flip" || e.altKey || e.ctrlKey || e.metaKey || typing(e.target)) return;
      if (e.key === " ") { setPlaying(!flipTimer); e.preventDefault(); }
      else if (e.key === "ArrowRight") { setPlaying(false); flipShow(flipAt + 1); e.preventDefault(); }
      else if (e.key === "ArrowLeft") { setPlaying(false); flipShow(flipAt - 1); e.preventDefault(); }
    });
    setMode(items.length === 2 ? "slider" : "flip");

    // "use this one": move HEAD's branch to a step, after saying what moves
    $$("[data-use]", root).forEach((b) => b.addEventListener("click", async () => {
      const out = b.nextElementSibling;
      const what = `Move branch ${root.dataset.branch} from ${root.dataset.head.slice(0, 12)} to ${b.dataset.use.slice(0, 12)}? (its old place stays in the history; undo moves it back)`;
      if (!window.confirm(what)) return;
      const { ok, j } = await post(`${base}s/${encodeURIComponent(root.dataset.session)}/head`, { step: b.dataset.use });
      out.textContent = ok ? ` ${j.branch} is now at ${j.step.slice(0, 12)}` : ` cannot: ${j.error}`;
      if (ok) root.dataset.head = j.step;
    }));
    window.exqCompare = { maps, overlay, timings, setMode, screenOf: (x, y) => {
      const p = overlay.latLngToContainerPoint(ll(x, y));
      const box = overlay.getContainer().getBoundingClientRect();
      return { x: box.left + p.x, y: box.top + p.y };
    } };
  }
})();
