// The image browser of the run report: filters, sorting and a confidence slider that redraws
// the boxes. Data: one JSON block written by yft/evaluate/html_report.py. Per image, boxes are
// [x, y, w, h, class, crowd]; detections [x, y, w, h, class, score, state, box index] with
// state 1 correct, 0 false positive, 2 matched a crowd box, at IoU 0.5 (a detection's match does
// not depend on the threshold, so each count below is exact at any confidence).
"use strict";
(function () {
  const block = document.getElementById("browser-data");
  if (!block) return;
  const data = JSON.parse(block.textContent);
  const SVG = "http://www.w3.org/2000/svg";
  const PAGE = 48;
  const el = (id) => document.getElementById(id);
  const slider = el("conf"), classSel = el("class-filter"), errorSel = el("error-filter"), sortSel = el("sort");
  const grid = el("grid"), more = el("more");
  let shown = PAGE;

  slider.min = Math.max(0, Math.floor(100 * data.min_conf) / 100);
  slider.value = data.conf;

  // What an image shows at a confidence for a class (-1: all): boxes, detections, counts.
  function view(image, conf, cls) {
    const dets = image.det.filter((d) => d[5] >= conf && (cls < 0 || d[4] === cls));
    const found = new Set(dets.filter((d) => d[6] === 1).map((d) => d[7]));
    const gts = [];
    image.gt.forEach((g, i) => {
      if (cls < 0 || g[4] === cls) gts.push({ box: g, missed: !g[5] && !found.has(i), crowd: g[5] === 1 });
    });
    const fp = dets.filter((d) => d[6] === 0).length;
    const fn = gts.filter((g) => g.missed).length;
    return { dets, gts, fp, fn, relevant: cls < 0 || dets.length > 0 || gts.length > 0 };
  }

  function keep(v, mode) {
    if (!v.relevant) return false;
    if (mode === "fp") return v.fp > 0;
    if (mode === "fn") return v.fn > 0;
    if (mode === "any") return v.fp + v.fn > 0;
    if (mode === "none") return v.fp + v.fn === 0;
    return true;
  }

  function rect(svg, b, cls, title) {
    const r = document.createElementNS(SVG, "rect");
    r.dataset.cls = b[4];
    r.setAttribute("x", b[0]); r.setAttribute("y", b[1]);
    r.setAttribute("width", Math.max(b[2], 0.5)); r.setAttribute("height", Math.max(b[3], 0.5));
    r.setAttribute("class", cls);
    const t = document.createElementNS(SVG, "title");
    t.textContent = title;
    r.appendChild(t);
    svg.appendChild(r);
  }

  function card(image, v) {
    const div = document.createElement("div");
    div.className = "card";
    div.dataset.file = image.file;
    div.dataset.fp = v.fp;
    div.dataset.fn = v.fn;
    const frame = document.createElement("div");
    frame.className = "frame";
    const img = document.createElement("img");
    img.src = image.src;
    img.alt = image.file;
    img.loading = "eager";
    frame.appendChild(img);
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + image.w + " " + image.h);
    svg.setAttribute("preserveAspectRatio", "none");
    const font = image.w / 26;  // about 11 px on a 280 px wide card, whatever the image size
    v.gts.forEach((g) => {
      const kind = g.crowd ? "ig" : g.missed ? "fn" : "gt";
      rect(svg, g.box, "box " + kind, data.class_names[g.box[4]] + (g.crowd ? " (crowd)" : g.missed ? " (missed)" : ""));
    });
    const labelled = v.dets.length <= 30;  // beyond that, names cover the image: hover shows them
    v.dets.forEach((d) => {
      const kind = d[6] === 1 ? "tp" : d[6] === 2 ? "ig" : "fp";
      const label = data.class_names[d[4]] + " " + d[5].toFixed(2);
      rect(svg, d, "det " + kind, label);
      if (!labelled) return;
      const name = data.class_names[d[4]];
      const text = document.createElementNS(SVG, "text");
      text.setAttribute("x", d[0] + 2);
      text.setAttribute("y", Math.max(font, d[1] - 2));
      text.setAttribute("font-size", font);
      text.setAttribute("class", kind);
      text.textContent = (name.length > 16 ? name.slice(0, 15) + "\u2026" : name) + " " + d[5].toFixed(2);
      svg.appendChild(text);
    });
    frame.appendChild(svg);
    div.appendChild(frame);
    const cap = document.createElement("div");
    cap.className = "caption";
    const errors = v.fp + v.fn ? '<span class="err">' : "<span>";
    cap.innerHTML = errors + "FP " + v.fp + " &middot; missed " + v.fn + "</span> &middot; " +
      v.dets.length + " detections, " + v.gts.length + " boxes<br>";
    cap.appendChild(document.createTextNode(image.file));
    div.appendChild(cap);
    div.addEventListener("click", () => div.classList.toggle("big"));
    return div;
  }

  function draw() {
    const conf = Number(slider.value), cls = Number(classSel.value), mode = errorSel.value;
    el("conf-value").textContent = conf.toFixed(2);
    const rows = [];
    data.images.forEach((image) => {
      const v = view(image, conf, cls);
      if (keep(v, mode)) rows.push([image, v]);
    });
    if (sortSel.value === "errors") {
      rows.sort((a, b) => (b[1].fp + b[1].fn) - (a[1].fp + a[1].fn) || a[0].id - b[0].id);
    } else {
      rows.sort((a, b) => (a[0].file < b[0].file ? -1 : a[0].file > b[0].file ? 1 : 0));
    }
    grid.replaceChildren(...rows.slice(0, shown).map((r) => card(r[0], r[1])));
    const fp = rows.reduce((s, r) => s + r[1].fp, 0), fn = rows.reduce((s, r) => s + r[1].fn, 0);
    el("summary").textContent = rows.length + " of " + data.images.length + " images; " +
      fp + " false positives, " + fn + " missed boxes at this confidence";
    more.hidden = rows.length <= shown;
  }

  function reset() { shown = PAGE; draw(); }
  slider.addEventListener("input", draw);
  [classSel, errorSel, sortSel].forEach((s) => s.addEventListener("change", reset));
  more.addEventListener("click", () => { shown += PAGE; draw(); });
  draw();
})();
