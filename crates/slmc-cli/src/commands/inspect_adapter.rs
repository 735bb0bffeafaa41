//! `slmc inspect ADIR` on a PEFT adapter directory: kind, rank, scaling, targets, parameters.

use slmc_formats::adapter::{TargetModules, read_peft};
use std::path::Path;

/// Whether `path` is a PEFT adapter directory.
pub fn is_adapter_dir(path: &Path) -> bool {
    path.join("adapter_config.json").is_file()
}

/// Prints the adapter's summary (or JSON).
pub fn run(path: &Path, json: bool) -> anyhow::Result<()> {
    let a = read_peft(path)?;
    let c = &a.config;
    let params: usize = a
        .modules
        .values()
        .map(|w| w.a.data.len() + w.b.data.len() + w.magnitude.as_ref().map_or(0, Vec::len))
        .sum::<usize>()
        + a.saved.values().map(|t| t.data.len()).sum::<usize>();
    let kind = if c.dora { "DoRA" } else { "LoRA" };
    let targets = match &c.target_modules {
        TargetModules::Names(n) => n.join(", "),
        TargetModules::Regex(r) => format!("re:{r}"),
    };
    if json {
        let v = serde_json::json!({
            "kind": kind,
            "r": c.r,
            "alpha": c.alpha,
            "rslora": c.rslora,
            "scale": c.scale(),
            "dropout": c.dropout,
            "target_modules": targets,
            "adapted_modules": a.modules.len(),
            "modules_to_save": c.modules_to_save,
            "parameters": params,
            "base_model": c.base_model_name_or_path,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("adapter      {} (PEFT {kind})", path.display());
    println!(
        "rank         r = {}, alpha = {}, scale {}{}",
        c.r,
        c.alpha,
        c.scale(),
        if c.rslora { " (rsLoRA: alpha/sqrt(r))" } else { "" }
    );
    println!("targets      {targets} ({} modules)", a.modules.len());
    if !c.modules_to_save.is_empty() {
        println!("saved whole  {}", c.modules_to_save.join(", "));
    }
    println!("parameters   {params} ({:.2} MB as f32)", params as f64 * 4.0 / 1e6);
    if let Some(b) = &c.base_model_name_or_path {
        println!("base model   {b}");
    }
    Ok(())
}
