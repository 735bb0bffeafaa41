//! Every recipe in `recipes/` validates; those whose model is on disk also plan.

use slmc_recipe::plan::{model_config, plan};
use std::path::Path;

#[test]
fn every_shipped_recipe_validates_and_plans() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut n = 0;
    for entry in std::fs::read_dir(root.join("recipes")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        n += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        let recipe = match slmc_recipe::load_str(&text, &path.display().to_string(), &[]) {
            Ok(r) => r,
            Err((sources, diags)) => panic!("{}", sources.render_all(&diags)),
        };
        // Paths in recipes are relative to the repository root.
        let cwd = std::env::current_dir().unwrap();
        std::env::set_current_dir(&root).unwrap();
        let config = model_config(&recipe.model);
        let teacher = recipe.teacher.as_ref().and_then(|t| model_config(t).ok());
        std::env::set_current_dir(cwd).unwrap();
        if let Ok(c) = config {
            let p = plan(&recipe, c, teacher.as_ref());
            assert_eq!(p.stages.len(), recipe.stages.len(), "{}", path.display());
        }
    }
    assert!(n >= 1, "no recipes found");
}
