//! Arguments shared by the recipe commands, and recipe loading with rendered diagnostics.

use anyhow::bail;
use slmc_recipe::Recipe;
use std::path::PathBuf;

/// A recipe and overrides.
#[derive(clap::Args, Clone)]
pub struct RecipeArgs {
    /// The recipe (TOML).
    pub recipe: PathBuf,
    /// Override a recipe value before validation, e.g. `--set stage.0.lr=1e-4` or
    /// `--set model.path=models/x` (repeatable; array entries by index).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

impl RecipeArgs {
    /// Loads and validates the recipe; on failure prints every diagnostic to stderr.
    pub fn load(&self) -> anyhow::Result<(Recipe, String)> {
        let text = std::fs::read_to_string(&self.recipe)
            .map_err(|e| anyhow::anyhow!("cannot read recipe {}: {e}", self.recipe.display()))?;
        match slmc_recipe::load_str(&text, &self.recipe.display().to_string(), &self.sets) {
            Ok(r) => Ok((r, text)),
            Err((sources, diags)) => {
                let rendered = sources.render_all(&diags);
                // The last line is the summary; the error type prints it once more.
                let (body, last) = rendered.rsplit_once('\n').unwrap_or(("", &rendered));
                eprintln!("{body}");
                bail!("{}", last.trim_start_matches("error: "))
            }
        }
    }
}
