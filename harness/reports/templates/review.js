// The review pages' script: sortable tables, and the outputs drawn a page at a time from
// the JSON in #review-data. Everything from the data is written with textContent, never
// as HTML. Shared by the run report and the comparison page.
//
// The data: {marks, differ: "item" | "row", corner, rows: [{label, setting?, shots?}],
// cols: [{label, shots?}], sep, blocks: [text], items: [{title, refs,
// prompts: [[label, [block index]]] (joined with sep),
// cells: [[row, col, outputs]]}]}; an output is {t: text, x: what a stop string cut,
// s: stop reason, k: tokens, lp: mean log-prob, n: count, ok?: 1 | 0, p?: label or null,
// r?: each label's log-prob (scoring: likelihood)}.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------ sortable tables
  document.querySelectorAll("table.sortable").forEach((table) => {
    const heads = Array.from(table.tHead.rows[table.tHead.rows.length - 1].cells);
    heads.forEach((th, col) => {
      th.addEventListener("click", () => {
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        heads.forEach((h) => h.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const value = (row) => {
          const cell = row.cells[col];
          const v = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
          return v === "" || isNaN(Number(v)) ? v : Number(v);
        };
        // Each body (the summary's shot counts) sorts on its own, its heading row first.
        Array.from(table.tBodies).forEach((body) => {
          const rows = Array.from(body.rows).filter((row) => !row.classList.contains("group"));
          rows.sort((a, b) => {
            const x = value(a), y = value(b);
            if (x === y) return 0;
            if (x === "") return 1;  // empty cells last either way
            if (y === "") return -1;
            return (x < y ? -1 : 1) * (ascending ? 1 : -1);
          });
          rows.forEach((row) => body.appendChild(row));
        });
      });
    });
  });

  const holder = $("review-data");
  if (!holder) return;
  const data = JSON.parse(holder.textContent);
  const PAGE = 20;
  const rows = data.rows, cols = data.cols;
  const filterKeys = Array.from(document.querySelectorAll("select[data-key]"));
  let shown = [], page = 0;

  // What a search looks through: the references, the last prompt block and the outputs.
  data.items.forEach((item) => {
    item.prompts = item.prompts.map(([label, ids]) => [label, ids.map((i) => data.blocks[i]).join(data.sep)]);
    const prompt = item.prompts.length ? item.prompts[0][1] : "";
    const outs = item.cells.map((c) => c[2].map((o) => o.t).join(" ")).join(" ");
    item.haystack = (item.title + " " + item.refs.join(" ") + " " + prompt + " " + outs)
      .toLowerCase();
  });

  function cellShown(r, c) {
    return filterKeys.every((select) => {
      const key = select.dataset.key, want = select.value;
      if (want === "") return true;
      return [rows[r], cols[c]].every((axis) => axis[key] === undefined || axis[key] === want);
    });
  }

  function outputShown(o, mark) {
    if (mark === "") return true;
    if (mark === "right") return o.ok === 1;
    if (mark === "wrong") return o.ok === 0;
    if (mark === "invalid") return o.p === null;
    return true;
  }

  // Do the visible cells of a group disagree? Right/wrong where answers are marked,
  // else the output texts.
  function disagree(cells) {
    const seen = new Set();
    cells.forEach((cell) => cell[2].forEach((o) => seen.add(data.marks ? o.ok : o.t)));
    return seen.size > 1;
  }

  function differs(item, cells) {
    if (data.differ === "item") return disagree(cells);
    const byRow = new Map();
    cells.forEach((cell) => {
      if (!byRow.has(cell[0])) byRow.set(cell[0], []);
      byRow.get(cell[0]).push(cell);
    });
    return Array.from(byRow.values()).some((group) => group.length > 1 && disagree(group));
  }

  function apply() {
    const mark = $("f-mark") ? $("f-mark").value : "";
    const query = $("f-search").value.trim().toLowerCase();
    const onlyDiffer = $("f-differ") ? $("f-differ").checked : false;
    shown = [];
    data.items.forEach((item) => {
      if (query !== "" && !item.haystack.includes(query)) return;
      const cells = item.cells.filter((cell) => cellShown(cell[0], cell[1]));
      if (!cells.some((cell) => cell[2].some((o) => outputShown(o, mark)))) return;
      if (onlyDiffer && !differs(item, cells)) return;
      shown.push(item);
    });
    page = 0;
    paint();
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function fixed(value, digits) {
    return value === null || value === undefined ? "–" : value.toFixed(digits).replace("-", "−");
  }

  // What another script (ratings.js) adds to each output drawn: hooks.output(node, output,
  // item, row, col), called after the node is built.
  const hooks = {};

  function outputNode(o, item, r, c) {
    const mark = o.ok === 1 ? "right" : o.ok === 0 ? "wrong" : "";
    const node = el("div", "out " + mark);
    node.dataset.mark = mark;
    if (o.n > 1) node.appendChild(el("span", "count", "×" + o.n));
    if (mark) node.appendChild(el("span", "mark", mark === "right" ? "✓" : "✗"));
    const text = el("span", "text", o.t);
    if (o.t === "") { text.textContent = "(empty)"; text.classList.add("empty"); }
    node.appendChild(text);
    if (o.x) {  // the part a stop string cut off, line breaks made visible
      const cut = el("span", "cut", o.x.replace(/\n/g, "↵"));
      cut.title = "cut by a stop string";
      node.appendChild(cut);
    }
    const tags = [o.s];
    if (o.k !== null && o.k !== undefined) tags.push(o.k + " tok");
    if (o.lp !== null && o.lp !== undefined) tags.push("lp " + fixed(o.lp, 2));
    if (o.p !== undefined) tags.push("→ " + (o.p === null ? "no label" : o.p));
    node.appendChild(document.createTextNode(" "));
    node.appendChild(el("span", "tag", tags.join(" · ")));
    if (o.r) node.appendChild(el("div", "tag list", "log-prob per option: " + o.r.replace(/-/g, "−")));
    if (o.th !== undefined) {  // a reasoning model's thinking, folded: the answer is scored
      const fold = el("details", "reasoning");
      fold.appendChild(el("summary", "tag", "reasoning (" + o.th.length + " characters)"));
      fold.appendChild(el("div", "text", o.th));
      node.appendChild(fold);
    }
    if (hooks.output && item) hooks.output(node, o, item, rows[r], cols[c]);
    return node;
  }

  function itemNode(item) {
    const mark = $("f-mark") ? $("f-mark").value : "";
    const section = el("section", "item");
    section.appendChild(el("h3", "", item.title));
    if (item.refs.length) {
      const ref = el("div", "ref");
      ref.appendChild(el("b", "", "reference"));
      ref.appendChild(el("span", "text", item.refs[0]));
      if (item.refs.length > 1) {
        ref.appendChild(el("span", "tag", "  (also " + item.refs.slice(1).join(", ") + ")"));
      }
      section.appendChild(ref);
    }
    const prompts = el("div", "prompts");
    item.prompts.forEach(([label, text]) => {
      const details = el("details");
      details.appendChild(el("summary", "", "prompt, " + label));
      details.appendChild(el("pre", "", text));
      prompts.appendChild(details);
    });
    section.appendChild(prompts);

    const byCell = new Map(item.cells.map((cell) => [cell[0] + ":" + cell[1], cell[2]]));
    const rowIds = rows.map((_, r) => r).filter((r) => cols.some((_, c) => byCell.has(r + ":" + c) && cellShown(r, c)));
    const colIds = cols.map((_, c) => c).filter((c) => rowIds.some((r) => cellShown(r, c)));
    const table = el("table", "grid");
    const head = table.createTHead().insertRow();
    head.appendChild(el("th", "rowhead", data.corner));
    colIds.forEach((c) => head.appendChild(el("th", "", cols[c].label)));
    const body = table.createTBody();
    rowIds.forEach((r) => {
      const tr = body.insertRow();
      Object.entries(rows[r]).forEach(([k, v]) => { if (k !== "label") tr.dataset[k] = v; });
      tr.appendChild(el("th", "rowhead", rows[r].label));
      colIds.forEach((c) => {
        const td = tr.insertCell();
        Object.entries(cols[c]).forEach(([k, v]) => { if (k !== "label") td.dataset[k] = v; });
        const outs = (byCell.get(r + ":" + c) || []).filter((o) => outputShown(o, mark));
        if (!cellShown(r, c)) return;
        outs.forEach((o) => td.appendChild(outputNode(o, item, r, c)));
        if (!byCell.has(r + ":" + c)) td.appendChild(el("span", "none", "–"));
      });
    });
    section.appendChild(table);
    return section;
  }

  function paint() {
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    page = Math.min(Math.max(page, 0), pages - 1);
    const list = $("items");
    list.replaceChildren(...shown.slice(page * PAGE, (page + 1) * PAGE).map(itemNode));
    if (!shown.length) list.appendChild(el("p", "none", "No item matches these filters."));
    $("page").textContent = "page " + (page + 1) + " / " + pages;
    $("f-count").textContent = shown.length + " of " + data.items.length + " items";
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
  }

  filterKeys.forEach((select) => select.addEventListener("change", apply));
  ["f-mark", "f-differ"].forEach((id) => { if ($(id)) $(id).addEventListener("change", apply); });
  let typing = null;
  $("f-search").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(apply, 150); });
  $("prev").addEventListener("click", () => { page -= 1; paint(); window.scrollTo(0, $("outputs").offsetTop); });
  $("next").addEventListener("click", () => { page += 1; paint(); window.scrollTo(0, $("outputs").offsetTop); });
  apply();
  window.harnessReview = { data: data, hooks: hooks, repaint: paint };
})();
