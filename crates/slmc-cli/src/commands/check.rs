//! `slmc check RECIPE`: validate a recipe and print its plan without running anything.

use super::recipe_args::RecipeArgs;
use slmc_recipe::plan::{Compute, model_config, plan_on};

/// Arguments of `slmc check`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// The device memory the stages should fit, e.g. `48GB` or `24GiB` (overrides the recipe's
    /// `memory-budget`); a stage planned above it gets a warning.
    #[arg(long, value_name = "SIZE", value_parser = slmc_recipe::plan::parse_bytes)]
    pub memory_budget: Option<u64>,
}

/// Runs the command.
/// `device`: the `--device` name, whose operations the memory estimates assume.
pub fn run(a: Args, device: &str) -> anyhow::Result<()> {
    let (recipe, _) = a.recipe.load()?;
    let config = model_config(&recipe.model).map_err(|d| {
        let sources = slmc_recipe::Sources {
            file_name: a.recipe.recipe.display().to_string(),
            text: std::fs::read_to_string(&a.recipe.recipe).unwrap_or_default(),
            sets: a.recipe.sets.clone(),
        };
        eprint!("{}", sources.render(&d));
        anyhow::anyhow!("{}: the model cannot be read", a.recipe.recipe.display())
    })?;
    let teacher = match &recipe.teacher {
        Some(t) => Some(model_config(t).map_err(|d| anyhow::anyhow!("[teacher]: {}", d.message))?),
        None => None,
    };
    let mut plan = plan_on(&recipe, config, teacher.as_ref(), Compute::for_device(device));
    if a.memory_budget.is_some() {
        plan.memory_budget = a.memory_budget;
    }
    print!("{plan}");
    if !plan.problems.is_empty() {
        let sources = slmc_recipe::Sources {
            file_name: a.recipe.recipe.display().to_string(),
            text: std::fs::read_to_string(&a.recipe.recipe).unwrap_or_default(),
            sets: a.recipe.sets.clone(),
        };
        eprint!("{}", sources.render_some(&plan.problems));
        anyhow::bail!(
            "{}: {} problem{} binding the recipe to the model",
            a.recipe.recipe.display(),
            plan.problems.len(),
            if plan.problems.len() == 1 { "" } else { "s" }
        );
    }
    println!("ok: {} is valid", a.recipe.recipe.display());
    Ok(())
}
