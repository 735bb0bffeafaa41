//! The report's frame: title and the run at a glance, the stages with their wall time, the
//! gates, and the manifest (what the run was made from).

use super::data::RunData;
use super::fmt;
use super::html::{Cell, esc, table};
use super::quality::{evaluations, reference};

/// Title, status line and the at-a-glance tiles.
pub(crate) fn header(run: &RunData) -> String {
    let done = run.stages.iter().filter(|s| s.done.is_some()).count();
    let status = if run.finished() {
        "finished".to_string()
    } else {
        format!("not finished: {done} of {} stages done", run.stages.len())
    };
    let mut h = format!(
        "<header><h1>slmc run <code>{}</code></h1><p class=\"muted\">{} · {status} · slmc {} · {} backend · seed {}</p></header>",
        esc(&run.name),
        esc(&run.root.display().to_string()),
        esc(&run.manifest.slmc_version),
        esc(&run.manifest.backend),
        run.manifest.seed
    );
    let mut tiles = Vec::new();
    let rows = evaluations(run);
    if let (Some(first), Some(last)) =
        (rows.iter().find(|r| r.is_input), rows.iter().rev().find(|r| !r.is_input))
    {
        let delta = reference(&rows, last)
            .map_or(String::new(), |b| format!(" ({})", fmt::percent_change(last.measured.ppl, b.ppl)));
        tiles.push(format!(
            "perplexity<b>{} → {}{delta}</b>input model → {}",
            fmt::ppl(first.measured.ppl),
            fmt::ppl(last.measured.ppl),
            esc(&last.model)
        ));
    }
    for a in &run.artifacts {
        let bpw = a.bits_per_weight().map_or(String::new(), |b| format!(", {b:.2} bits/weight"));
        tiles.push(format!(
            "{}<b>{} MB{bpw}</b><code>{}</code>",
            esc(a.format),
            fmt::mb(a.disk_bytes),
            esc(&a.name)
        ));
    }
    if let Some(o) = &run.outcome
        && !o.gates.is_empty()
    {
        let failed = o.gates.iter().filter(|g| !g.passed).count();
        let verdict = if failed == 0 {
            "<b class=\"pass\">all passed</b>".to_string()
        } else {
            format!("<b class=\"fail\">{failed} failed</b>")
        };
        tiles.push(format!("gates{verdict}{} checked", o.gates.len()));
    }
    let total: f64 = run.stages.iter().filter_map(|s| s.wall_seconds()).sum();
    if total > 0.0 {
        tiles.push(format!("wall time<b>{}</b>sum of the stages", fmt::seconds(total)));
    }
    if !tiles.is_empty() {
        h.push_str("<ul class=\"glance\">");
        for t in tiles {
            h.push_str(&format!("<li>{t}</li>"));
        }
        h.push_str("</ul>");
    }
    h
}

/// Every stage: kind, result, wall time, status.
pub(crate) fn stages(run: &RunData) -> String {
    let rows = run
        .stages
        .iter()
        .map(|s| {
            let status = match (&s.done, run.stage_metrics(s.index).next()) {
                (Some(_), _) => "done",
                (None, Some(_)) => "interrupted",
                (None, None) => "not run",
            };
            vec![
                Cell::num(s.index.to_string()),
                Cell::text(s.kind.name()),
                Cell::text(s.summary().unwrap_or("")),
                Cell::num(s.wall_seconds().map_or("–".into(), fmt::seconds)),
                Cell::text(status),
            ]
        })
        .collect();
    format!(
        "<section id=\"stages\"><h2>Stages</h2>{}<p class=\"muted\">Wall time: the run that finished the stage, \
         from its start or resume.</p></section>",
        table("stages", &["#", "kind", "result", "wall time", "status"], rows)
    )
}

/// The gates with pass / fail.
pub(crate) fn gates(run: &RunData) -> String {
    let Some(o) = &run.outcome else {
        return String::new();
    };
    if o.gates.is_empty() {
        return String::new();
    }
    let rows = o
        .gates
        .iter()
        .map(|g| {
            let verdict = if g.passed {
                "<span class=\"pass\">pass</span>"
            } else {
                "<span class=\"fail\">FAIL</span>"
            };
            vec![Cell::text(&g.gate), Cell::html(verdict.into())]
        })
        .collect();
    format!("<section id=\"gates\"><h2>Gates</h2>{}</section>", table("gates", &["gate", "result"], rows))
}

/// slmc version, backend, seed, recipe, `--set` overrides and input hashes.
pub(crate) fn manifest(run: &RunData) -> String {
    let m = &run.manifest;
    let code = |s: &str| Cell::html(format!("<code>{}</code>", esc(s)));
    let sets = if m.sets.is_empty() {
        Cell::text("none")
    } else {
        Cell::html(
            m.sets.iter().map(|s| format!("<code>--set {}</code>", esc(s))).collect::<Vec<_>>().join("<br>"),
        )
    };
    let rows = vec![
        vec![Cell::text("slmc version"), Cell::text(&m.slmc_version)],
        vec![Cell::text("backend"), Cell::text(&m.backend)],
        vec![Cell::text("seed"), Cell::text(m.seed.to_string())],
        vec![Cell::text("recipe"), code(&m.recipe_file)],
        vec![Cell::text("fingerprint (sha256 of recipe, overrides, stages)"), code(&m.recipe_hash)],
        vec![Cell::text("stages run"), Cell::text(&m.stages)],
        vec![Cell::text("--set overrides"), sets],
    ];
    let inputs = m.inputs.iter().map(|(path, hash)| vec![code(path), code(hash)]).collect();
    format!(
        "<section id=\"manifest\"><h2>Manifest</h2>{}<h3>Inputs</h3>{}</section>",
        table("manifest", &[], rows),
        table("inputs", &["file", "sha256"], inputs)
    )
}
