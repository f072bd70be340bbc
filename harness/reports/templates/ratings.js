// Ratings in the offline report: a person scores outputs on the task's scale (one score
// per criterion, and a note), or picks the better of two outputs shown blind, and
// exports one JSON file for `harness ratings`. Everything stays in this browser's
// localStorage under the run's id, so a reload (or a copy of the run folder opened by
// someone else) keeps what was rated there. Nothing is sent anywhere; every text from
// the data is written with textContent.
//
// #rating-data: {run, task, scale: [point, worst first], criteria: [name], format}.
// An output is named by [item, setting, shots, seed, sequence]; a pair by its item and
// its two outputs, "a" being the first of the two settings × shots in the report's order.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const holder = $("rating-data"), review = window.harnessReview;
  if (!holder || !review) return;
  const cfg = JSON.parse(holder.textContent);
  const data = review.data;
  const STORE = "harness-ratings:" + cfg.run;
  const named = !(cfg.criteria.length === 1 && cfg.criteria[0] === "overall");

  // ------------------------------------------------------------ what is kept
  function load() {
    try {
      const kept = JSON.parse(localStorage.getItem(STORE) || "null");
      if (kept && typeof kept === "object" && kept.outputs && Array.isArray(kept.pairs)) return kept;
    } catch (e) { /* storage off or damaged: start afresh */ }
    return { rater: "", outputs: {}, pairs: [] };
  }
  const state = load();
  let message = "";  // the last thing said under the counter (exported, type your name)
  function save() {
    message = "";
    try { localStorage.setItem(STORE, JSON.stringify(state)); } catch (e) { say("cannot keep ratings in this browser: " + e.message); }
    count();
  }

  const keyOf = (item, setting, shots, q) => JSON.stringify([item, setting, Number(shots), q[0], q[1]]);
  let total = 0;
  data.items.forEach((item) => item.cells.forEach((cell) => { total += cell[2].length; }));

  function rated() {
    return Object.values(state.outputs).filter((r) => Object.keys(r.scores || {}).length).length;
  }
  function say(text) { message = text; count(); }
  function count() {
    $("r-count").textContent = rated() + " of " + total + " outputs rated · " + state.pairs.length +
      " pair" + (state.pairs.length === 1 ? "" : "s") + (message ? " · " + message : "");
  }

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // ------------------------------------------------------------ rating one output
  function rateNode(key, o) {
    const box = el("div", "rate");
    box.dataset.key = key;
    const entry = () => state.outputs[key] || (state.outputs[key] = { scores: {}, note: "", output: o.t });
    cfg.criteria.forEach((criterion) => {
      const group = el("span", "crit");
      if (named) group.appendChild(el("span", "cname", criterion));
      cfg.scale.forEach((point) => {
        const button = el("button", "pt", point);
        button.type = "button";
        button.dataset.criterion = criterion;
        button.dataset.point = point;
        const now = state.outputs[key] && state.outputs[key].scores[criterion];
        button.setAttribute("aria-pressed", now === point ? "true" : "false");
        button.addEventListener("click", () => {
          const e = entry();
          if (e.scores[criterion] === point) delete e.scores[criterion]; else e.scores[criterion] = point;
          group.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", e.scores[criterion] === b.dataset.point ? "true" : "false"));
          save();
        });
        group.appendChild(button);
      });
      box.appendChild(group);
    });
    const note = el("input", "note");
    note.type = "text";
    note.placeholder = "note";
    note.maxLength = 2000;
    note.value = (state.outputs[key] && state.outputs[key].note) || "";
    note.addEventListener("change", () => { entry().note = note.value; save(); });
    box.appendChild(note);
    return box;
  }

  review.hooks.output = (node, o, item, row, col) => {
    if (!$("r-inline").checked || row.setting === undefined || col.shots === undefined) return;
    node.appendChild(rateNode(keyOf(item.id, row.setting, col.shots, o.q), o));
  };

  // ------------------------------------------------------------ blind pairs
  // The arms (a setting at a shot count) and, for each pair of arms, the items that have
  // outputs of both; the next pair shown is from the pair of arms rated least so far.
  const arms = [];
  data.rows.forEach((row, r) => data.cols.forEach((col, c) => arms.push({ r: r, c: c, setting: row.setting, shots: Number(col.shots) })));
  const armPairs = [];
  for (let i = 0; i < arms.length; i++) {
    for (let j = i + 1; j < arms.length; j++) {
      const items = data.items.filter((item) => cellOf(item, arms[i]) && cellOf(item, arms[j]));
      if (items.length) armPairs.push({ a: arms[i], b: arms[j], items: items });
    }
  }
  function cellOf(item, arm) {
    const cell = item.cells.find((c) => c[0] === arm.r && c[1] === arm.c);
    return cell ? cell[2] : null;
  }
  const same = (p, q) => p.setting === q.setting && p.shots === q.shots;
  function timesRated(pair) {
    return state.pairs.filter((p) => same(p.a, pair.a) && same(p.b, pair.b)).length;
  }
  const pick = (list) => list[Math.floor(Math.random() * list.length)];

  let current = null;
  function nextPair() {
    const box = $("r-blind");
    box.hidden = false;
    box.replaceChildren();
    if (!armPairs.length) { box.appendChild(el("p", "none", "Only one setting and shot count: nothing to compare.")); return; }
    const fewest = Math.min(...armPairs.map(timesRated));
    const pair = pick(armPairs.filter((p) => timesRated(p) === fewest));
    const done = new Set(state.pairs.filter((p) => same(p.a, pair.a) && same(p.b, pair.b)).map((p) => p.item));
    const fresh = pair.items.filter((item) => !done.has(item.id));
    const item = pick(fresh.length ? fresh : pair.items);
    const outA = pick(cellOf(item, pair.a)), outB = pick(cellOf(item, pair.b));
    const left = Math.random() < 0.5 ? "a" : "b";
    current = { pair: pair, item: item, out: { a: outA, b: outB }, left: left };

    box.appendChild(el("h4", "", item.title + " · which answer is better?"));
    // the prompt with the fewest examples: the item itself, as both sides answered it
    box.appendChild(el("pre", "pair-prompt", item.prompts.length ? item.prompts[0][1] : ""));
    if (item.refs.length) {
      const ref = el("details", "pair-ref");
      ref.appendChild(el("summary", "", "reference"));
      ref.appendChild(el("span", "text", item.refs[0]));
      box.appendChild(ref);
    }
    const sides = el("div", "pair-sides");
    [["A", left], ["B", left === "a" ? "b" : "a"]].forEach(([label, side]) => {
      const card = el("div", "pair-side");
      card.dataset.label = label;
      card.appendChild(el("b", "", label));
      const o = current.out[side];
      const text = el("span", "text", o.t === "" ? "(empty)" : o.t);
      card.appendChild(text);
      card.appendChild(el("div", "who meta", ""));
      sides.appendChild(card);
    });
    box.appendChild(sides);
    const buttons = el("div", "pair-buttons");
    [["A is better", "A"], ["tie", "tie"], ["B is better", "B"]].forEach(([text, choice]) => {
      const button = el("button", "choose", text);
      button.type = "button";
      button.dataset.choice = choice;
      button.addEventListener("click", () => choose(choice));
      buttons.appendChild(button);
    });
    box.appendChild(buttons);
  }

  function choose(choice) {
    if (!current) return;
    const c = current;
    current = null;
    const shownB = c.left === "a" ? "b" : "a";
    const winner = choice === "tie" ? "tie" : choice === "A" ? c.left : shownB;
    const side = (arm, o) => ({ setting: arm.setting, shots: arm.shots, seed: o.q[0], sequence: o.q[1] });
    state.pairs.push({ item: c.item.id, a: side(c.pair.a, c.out.a), b: side(c.pair.b, c.out.b), winner: winner, left: c.left });
    save();
    // the names, shown once rated
    const name = (arm) => arm.setting + " · " + arm.shots + "-shot";
    const who = { A: c.left === "a" ? c.pair.a : c.pair.b, B: c.left === "a" ? c.pair.b : c.pair.a };
    document.querySelectorAll("#r-blind .pair-side").forEach((card) => {
      card.querySelector(".who").textContent = name(who[card.dataset.label]);
    });
    document.querySelectorAll("#r-blind .choose").forEach((b) => {
      b.disabled = true;
      if (b.dataset.choice === choice) b.classList.add("chosen");
    });
    const next = el("button", "next-pair", "next pair ›");
    next.type = "button";
    next.addEventListener("click", nextPair);
    $("r-blind").appendChild(next);
  }

  // ------------------------------------------------------------ export
  function exported() {
    const outputs = [];
    Object.entries(state.outputs).forEach(([key, r]) => {
      if (!Object.keys(r.scores || {}).length && !r.note) return;
      const [item, setting, shots, seed, sequence] = JSON.parse(key);
      outputs.push({ item: item, setting: setting, shots: shots, seed: seed, sequence: sequence,
        output: r.output, scores: r.scores, note: r.note || "" });
    });
    return { harness_ratings: cfg.format, run: cfg.run, task: cfg.task, rater: state.rater,
      scale: cfg.scale, criteria: cfg.criteria, exported_at: new Date().toISOString(),
      outputs: outputs, pairs: state.pairs };
  }

  function download() {
    if (!state.rater.trim()) { say("type your name first"); $("r-name").focus(); return; }
    const blob = new Blob([JSON.stringify(exported(), null, 1)], { type: "application/json" });
    const link = el("a");
    link.href = URL.createObjectURL(blob);
    link.download = "ratings-" + cfg.task + "-" + state.rater.trim().replace(/[^\p{L}\p{N}_-]+/gu, "_") + ".json";
    document.body.appendChild(link);
    link.click();
    link.remove();
    say("exported");
  }

  $("r-name").value = state.rater;
  $("r-name").addEventListener("input", () => { state.rater = $("r-name").value; save(); });
  $("r-inline").addEventListener("change", () => review.repaint());
  $("r-pair").addEventListener("click", nextPair);
  $("r-export").addEventListener("click", download);
  count();
  review.repaint();
})();
