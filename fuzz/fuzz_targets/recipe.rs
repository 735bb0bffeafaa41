//! Any text given as a recipe (TOML, then validation) is either loaded or rejected with
//! diagnostics: never a panic; and the rendered diagnostics stay bounded (at most 20 shown,
//! each quoting a window of its line) however many problems the text has.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err((sources, diags)) = slmc_recipe::load_str(text, "r.toml", &["stage.0.lr=1e-3".to_string()]) {
        let rendered = sources.render_all(&diags);
        assert!(rendered.len() <= 21 * 2048, "{} bytes of diagnostics", rendered.len());
    }
});
